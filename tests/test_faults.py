"""Faults, on DuckDB and PostgreSQL: a run killed anywhere, reruns, two runs of one date
at once, PostgreSQL cut or down mid-publication, an interrupted backfill, shuffled input
files. After each, every business date is whole: its old rows or its new rows, never a
mix, never a key twice (``support.published`` asserts it on every read).

The books hold two consecutive dates and D - 1 is published before D, so that D's
backtest tables (which read the margin of D - 1) have rows in every comparison. The
expected rows are those of undisturbed runs in a quiet warehouse (``reference``).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl
import pytest

from risk_core.landing.generator import generate_landing
from tests.support import (
    cli,
    copy_published,
    date_lock_sessions,
    pipeline_runs,
    proxied,
    publication_in_progress,
    published,
    same_rows,
    spawned,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
D = dt.date(2026, 11, 20)
BEFORE = D - dt.timedelta(days=1)  #: D - 1: the margin that D's backtest reads


@dataclass(frozen=True)
class Books:
    a: Path  #: landing zone with book A for D - 1 and D
    b: Path  #: landing zone with another book (B) for the same dates


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> Books:
    root = tmp_path_factory.mktemp("fault-books")
    for date in (BEFORE, D):  # in date order: the price history is written up to the date
        generate_landing(root / "a", date, accounts=30, positions=400, seed=21)
        generate_landing(root / "b", date, accounts=35, positions=450, seed=22)
    return Books(root / "a", root / "b")


@dataclass(frozen=True)
class Reference:
    """What undisturbed runs publish, one after the other, in a quiet DuckDB warehouse."""

    url: str  #: D - 1 then D published from book A
    before: dict[str, pl.DataFrame]  #: rows of D - 1 from book A
    a: dict[str, pl.DataFrame]  #: rows of D from book A
    b: dict[str, pl.DataFrame]  #: rows of D from book B (over D - 1 from book A)


@pytest.fixture(scope="module")
def reference(books: Books, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    root = tmp_path_factory.mktemp("fault-reference")
    url_a, url_b = (f"duckdb:///{root / name}.duckdb" for name in ("a", "b"))
    for date in (BEFORE, D):
        outcome = _in_process(books.a, url_a, root, date)
        assert outcome.success, outcome.errors
    copy_published(url_a, url_b, BEFORE)
    outcome = _in_process(books.b, url_b, root)
    assert outcome.success, outcome.errors
    _, before = published(url_a, BEFORE)  # no D - 2: its backtest tables are empty
    _, a = published(url_a, D, require_rows=True)
    _, b = published(url_b, D, require_rows=True)
    assert (a["position_risk"].height, b["position_risk"].height) == (400, 450)
    return Reference(url_a, before, a, b)


def _seed(url: str, reference: Reference, *dates: dt.date) -> None:
    """Publish in ``url`` book A's runs of ``dates`` (copied from the reference)."""
    for date in dates:
        copy_published(reference.url, url, date)


@pytest.fixture(params=["duckdb", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


def _run_args(landing: Path, url: str, tmp_path: Path, date: dt.date = D) -> list[str]:
    return [
        "run",
        "--date",
        date.isoformat(),
        "--landing",
        str(landing),
        "--warehouse",
        url,
        "--artefacts",
        str(tmp_path / "artefacts"),
    ]


def _in_process(landing: Path, url: str, tmp_path: Path, date: dt.date = D):  # type: ignore[no-untyped-def]
    from pipelines.runner import run_business_date

    return run_business_date(
        date, landing_dir=str(landing), warehouse_url=url, artefacts_dir=str(tmp_path / "art")
    )


def _published_run(output: str, date: dt.date = D) -> str:
    """The run id a ``margin-eod`` output says it published for ``date``."""
    found = re.findall(rf"{date}: published \(run ([0-9a-f-]+)\)", output)
    assert len(found) == 1, f"no single 'published' line for {date} in:\n{output[-3000:]}"
    return str(found[0])


def _one_line(output: str) -> str:
    """The output with its whitespace collapsed (the console wraps long lines)."""
    return " ".join(output.split())


#: failpoint -> what the date must hold after a SIGKILL there
KILL_POINTS = [
    ("ingest", "old"),
    ("compute", "old"),
    ("publish.after_delete", "old"),
    ("publish.before_commit", "old"),
    ("publish.after_commit", "new"),
]


def test_a_run_killed_anywhere_leaves_the_date_old_or_new(
    books: Books, reference: Reference, url: str, tmp_path: Path
) -> None:
    _seed(url, reference, BEFORE, D)
    run, rows = published(url, D, require_rows=True)
    assert same_rows(rows, reference.a)
    # A run first opens the warehouse in its backtest step, after ingest and compute: killed
    # there it has touched no database, whatever the backend, and each such kill costs a
    # process start (about 5 s). DuckDB covers them; PostgreSQL the publication's points.
    points = KILL_POINTS if url.startswith("duckdb") else KILL_POINTS[2:]
    for point, expect in points:
        killed = cli(*_run_args(books.b, url, tmp_path), env={"MARGIN_FAILPOINTS": f"{point}=kill"})
        assert killed.returncode == -signal.SIGKILL, f"{point}: {killed.stderr[-2000:]}"
        now, now_rows = published(url, D, require_rows=True)  # whole, whatever it holds
        if expect == "old":
            assert now == run and same_rows(now_rows, rows), f"killed at {point}: the date changed"
        else:
            assert now != run, f"killed at {point}: not replaced"
            assert same_rows(now_rows, reference.b), f"killed at {point}: not book B's rows"
        run, rows = now, now_rows
    again = _in_process(books.b, url, tmp_path)
    assert again.success, again.errors
    final, rows = published(url, D, require_rows=True)
    assert final == again.run_id
    assert same_rows(rows, reference.b), "a normal run after the kills publishes book B's rows"
    # book A's run, the one killed after its commit and the last; the others wrote nothing
    assert pipeline_runs(url, D).height == 3


def test_kills_at_random_moments(books: Books, reference: Reference, tmp_path: Path) -> None:
    """SIGKILL from outside at random moments of the run (DuckDB): two aimed at random
    moments inside the publication's transaction and after its commit (the date must be
    old, then new), then one at a random moment in each quarter of the span from the
    start of the process to a little after the commit (stratified, so that a few draws
    cover start-up, ingest, compute, backtest and publication). The transaction is
    stretched (0.5 s after the delete and before the commit) so that kills land in it;
    after its commit the run stalls until killed, so that no kill comes too late."""
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    _seed(url, reference, BEFORE, D)
    run, rows = published(url, D, require_rows=True)
    never = tmp_path / "never-created"
    stretched = {
        "MARGIN_FAILPOINTS": "publish.after_delete=sleep:0.5,publish.before_commit=sleep:0.5,"
        f"publish.after_commit=wait:{never}"
    }
    rng = random.Random(20261120)
    inside = partial(publication_in_progress, url, D)
    commit_s = 0.0  # seconds from the start of a run to its commit, measured by the first kill
    quarters = [f"quarter {q + 1}" for q in range(4)]
    outcomes: list[tuple[str, float, str]] = []  # (aim, seconds after the start, outcome)
    for i, aim in enumerate(["after the commit", "in the transaction", *quarters]):
        log = tmp_path / f"killed-{i}.log"
        with spawned(*_run_args(books.b, url, tmp_path), env=stretched, log=log) as process:
            started = time.monotonic()
            if aim in quarters:
                quarter = 1.1 * commit_s / len(quarters)
                time.sleep(rng.uniform(quarters.index(aim), quarters.index(aim) + 1) * quarter)
            else:
                wait_until(inside, f"kill {i}: the publication began", running=process)
                if aim == "after the commit":
                    wait_until(
                        lambda: not inside(), f"kill {i}: the run committed", running=process
                    )
                    commit_s = time.monotonic() - started
                time.sleep(rng.uniform(0.0, 0.6))  # the transaction lasts over 1 s
            moment = time.monotonic() - started
            process.kill()  # asserts that the run was still running
        now, now_rows = published(url, D, require_rows=True)  # whole, whatever it holds
        if now == run:
            assert same_rows(now_rows, rows), f"kill {i} ({aim}): same run, other rows"
            outcome = "old"
        else:
            assert same_rows(now_rows, reference.b), f"kill {i} ({aim}): not book B's rows"
            outcome = "new"
        outcomes.append((aim, round(moment, 1), outcome))
        run, rows = now, now_rows
    aimed = [(aim, outcome) for aim, _, outcome in outcomes[:2]]
    assert aimed == [("after the commit", "new"), ("in the transaction", "old")], outcomes
    assert {outcome for *_, outcome in outcomes} == {"old", "new"}, outcomes
    again = _in_process(books.b, url, tmp_path)
    assert again.success, again.errors
    final, rows = published(url, D, require_rows=True)
    assert final == again.run_id and same_rows(rows, reference.b)
    new = sum(outcome == "new" for *_, outcome in outcomes)
    runs = pipeline_runs(url, D).height
    assert runs == 1 + new + 1, f"{runs} runs: one killed before its commit wrote? {outcomes}"


def test_rerun_is_idempotent_byte_for_byte(
    books: Books, reference: Reference, url: str, tmp_path: Path
) -> None:
    _seed(url, reference, BEFORE)
    first = _in_process(books.a, url, tmp_path)
    assert first.success, first.errors
    run, rows = published(url, D, require_rows=True)
    assert run == first.run_id and same_rows(rows, reference.a)
    second = _in_process(books.a, url, tmp_path)
    assert second.success, second.errors
    run, again = published(url, D, require_rows=True)
    assert run == second.run_id
    for name, frame in rows.items():
        assert again[name].equals(frame), f"{name} changed on a rerun of the same inputs"
    runs = pipeline_runs(url, D)
    assert sorted(runs["run_id"]) == sorted([first.run_id, second.run_id])
    assert runs["inputs_sha256"].n_unique() == 1 and runs["ruleset_sha256"].n_unique() == 1


def test_two_runs_of_one_date_at_once_never_interleave(
    books: Books, reference: Reference, url: str, tmp_path: Path
) -> None:
    """The first run (book A) stalls inside its publication, its delete done; the second
    (book B) starts then and must wait; released, the first commits, then the second:
    the date holds book B's rows, whole (a mix of the books would show).

    Where the second waits: on PostgreSQL, for the date's advisory lock, in its own
    publication. On DuckDB it cannot even open the file that the first holds (one
    process per file), so it waits at its first warehouse access (retrying), and
    reaches its publication after the first has committed."""
    _seed(url, reference, BEFORE)
    release = tmp_path / "release-first"
    stall = {"MARGIN_FAILPOINTS": f"publish.after_delete=wait:{release}"}
    first_args = _run_args(books.a, url, tmp_path)
    with spawned(*first_args, env=stall, log=tmp_path / "first.log") as first:
        inside = partial(publication_in_progress, url, D)
        wait_until(inside, "the first run reached its publication", running=first)
        second_args = _run_args(books.b, url, tmp_path)
        with spawned(*second_args, log=tmp_path / "second.log") as second:

            def waiting() -> bool:
                if url.startswith("duckdb"):  # retrying to open the file the first holds
                    return "Could not set lock" in second.output
                return any(not granted for _, granted in date_lock_sessions(url, D))

            wait_until(waiting, "the second run waits for the first", running=second)
            assert first.alive(), first.tail()
            release.touch()
            assert first.finish() == 0, first.tail()
            assert second.finish() == 0, second.tail()
        run_first, run_second = _published_run(first.output), _published_run(second.output)
    run, rows = published(url, D, require_rows=True)
    assert run == run_second, "the date holds the rows of the run published last"
    assert same_rows(rows, reference.b)
    runs = pipeline_runs(url, D).sort("finished_at")
    assert runs["run_id"].to_list() == [run_first, run_second], "published in that order"


def test_a_second_run_that_cannot_wait_fails_clearly(
    books: Books, reference: Reference, url: str, tmp_path: Path
) -> None:
    """A second run meeting a publication in progress waits at most
    MARGIN_WAREHOUSE_LOCK_TIMEOUT_S (not the outage budget), then fails saying that
    another run is at work and publishes nothing; the first publishes whole."""
    _seed(url, reference, BEFORE)
    release = tmp_path / "release-first"
    stall = {"MARGIN_FAILPOINTS": f"publish.after_delete=wait:{release}"}
    impatient = {"MARGIN_WAREHOUSE_LOCK_TIMEOUT_S": "1", "MARGIN_WAREHOUSE_RETRY_S": "120"}
    first_args = _run_args(books.a, url, tmp_path)
    with spawned(*first_args, env=stall, log=tmp_path / "first.log") as first:
        inside = partial(publication_in_progress, url, D)
        wait_until(inside, "the first run reached its publication", running=first)
        started = time.monotonic()
        second = cli(*_run_args(books.b, url, tmp_path), env=impatient, timeout=300)
        waited = time.monotonic() - started
        assert first.alive(), f"the first run ended before the second:\n{first.tail()}"
        release.touch()
        assert first.finish() == 0, first.tail()
        run_first = _published_run(first.output)
    message = _one_line(second.stdout + second.stderr)
    assert second.returncode == 1, message[-3000:]
    assert f"{D}: FAILED, nothing published" in message
    if url.startswith("duckdb"):
        # DuckDB admits one process per file: the second meets the first at its first
        # warehouse access (the backtest step's), before it could reach the date's lock.
        expected = (
            "another run holds the warehouse",
            "(DuckDB admits one process at a time); waited 1 s (MARGIN_WAREHOUSE_LOCK_TIMEOUT_S)",
        )
    else:
        expected = (
            f"warehouse_tables: another run of {D} is publishing it; waited 1 s "
            "(MARGIN_WAREHOUSE_LOCK_TIMEOUT_S) for its lock",
        )
    for text in expected:
        assert text in message, message[-3000:]
    assert waited < 100, f"{waited:.0f} s: waited for the outage budget, not the lock timeout"
    run, rows = published(url, D, require_rows=True)
    assert run == run_first and same_rows(rows, reference.a)
    assert pipeline_runs(url, D).height == 1


def _terminate_publisher(url: str, date: dt.date) -> None:
    """Terminate, from a connection of its own, the PostgreSQL backend that publishes
    ``date`` (holds its lock), as an administrator would (SQLSTATE 57P01 for its client)."""
    import sqlalchemy as sa

    holders = [pid for pid, granted in date_lock_sessions(url, date) if granted]
    assert len(holders) == 1, f"backends holding the lock of {date}: {holders}"
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            done = conn.execute(sa.text("select pg_terminate_backend(:p)"), {"p": holders[0]})
            assert done.scalar() is True, f"backend {holders[0]} not terminated"
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("cut", ["server restart", "backend terminated"])
def test_postgres_cut_mid_publication_is_retried(
    books: Books,
    reference: Reference,
    fresh_postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    cut: str,
) -> None:
    """Inside the publication's transaction, its delete done: every connection dropped
    and the server unreachable for 3 s (a restart), or the run's backend terminated by
    an administrator. The transaction is retried whole and succeeds."""
    import assets.publish

    _seed(fresh_postgres_url, reference, BEFORE, D)
    run_a, _ = published(fresh_postgres_url, D, require_rows=True)
    caplog.set_level(logging.WARNING, logger="pipelines.resilience")
    timers: list[threading.Timer] = []
    cuts: list[str] = []
    with proxied(fresh_postgres_url) as (proxy, url):

        def fault(phase: str) -> None:
            if phase != "after_delete" or cuts:
                return
            cuts.append(phase)
            if cut == "server restart":
                proxy.refuse()
                timers.append(threading.Timer(3.0, proxy.accept))
                timers[-1].start()
            else:
                _terminate_publisher(fresh_postgres_url, D)

        monkeypatch.setattr(assets.publish, "publish_phase", fault)
        try:
            outcome = _in_process(books.b, url, tmp_path)
        finally:
            for timer in timers:
                timer.cancel()
                timer.join()
    assert outcome.success, outcome.errors
    assert cuts == ["after_delete"], "the cut happened, once"
    retried = [
        r.getMessage()
        for r in caplog.records
        if r.name == "pipelines.resilience" and f"publish {D}" in r.getMessage()
    ]
    # (a terminated backend shows as 57P01 or as a lost connection: the client may read
    # the server's message or only find the socket closed; both are retried)
    assert any("retrying" in m for m in retried), "the publication was not retried"
    run, rows = published(fresh_postgres_url, D, require_rows=True)
    assert run == outcome.run_id and same_rows(rows, reference.b)
    assert sorted(pipeline_runs(fresh_postgres_url, D)["run_id"]) == sorted([run_a, run])


@pytest.mark.postgres
def test_postgres_down_fails_cleanly_and_publishes_nothing(
    books: Books,
    reference: Reference,
    fresh_postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import assets.publish

    _seed(fresh_postgres_url, reference, BEFORE, D)
    run_a, _ = published(fresh_postgres_url, D, require_rows=True)
    with proxied(fresh_postgres_url) as (proxy, url):

        def down(phase: str) -> None:
            if phase == "after_delete":
                proxy.refuse()

        monkeypatch.setattr(assets.publish, "publish_phase", down)
        monkeypatch.setenv("MARGIN_WAREHOUSE_RETRY_S", "3")
        started = time.monotonic()
        outcome = _in_process(books.b, url, tmp_path)
        assert not outcome.success
        assert time.monotonic() - started < 120
        text = " ".join(outcome.errors)
        assert "unavailable, gave up after" in text and f"publish {D}" in text, text
        proxy.accept()
    run, rows = published(fresh_postgres_url, D, require_rows=True)
    assert run == run_a and same_rows(rows, reference.a)
    assert pipeline_runs(fresh_postgres_url, D).height == 1


def _lines_by_date(output: str, dates: list[dt.date]) -> dict[dt.date, str]:
    """The line a backfill's output gives each date (``<date>: ...``)."""
    lines = {d: line for line in output.splitlines() for d in dates if line.startswith(f"{d}: ")}
    missing = [str(d) for d in dates if d not in lines]
    assert not missing, f"no line for {missing} in:\n{output[-3000:]}"
    return lines


def test_an_interrupted_backfill_resumes_with_the_missing_dates(url: str, tmp_path: Path) -> None:
    """A backfill killed inside the third date's transaction (every row inserted, not
    committed) leaves that date absent; resumed, it skips the two published dates (the
    same runs) and publishes the others."""
    landing = tmp_path / "landing"
    dates = [D - dt.timedelta(days=3 - i) for i in range(4)]
    for date in dates:
        generate_landing(landing, date, accounts=20, positions=200, seed=5)
    args = [
        "backfill",
        "--start",
        dates[0].isoformat(),
        "--end",
        dates[-1].isoformat(),
        "--landing",
        str(landing),
        "--warehouse",
        url,
        "--artefacts",
        str(tmp_path / "artefacts"),
    ]
    # The first two dates pass the failpoint (the file exists); it is removed once the
    # second is published, so the third stalls before its commit and is killed there.
    release = tmp_path / "release"
    release.touch()
    stall = {"MARGIN_FAILPOINTS": f"publish.before_commit=wait:{release}"}
    with spawned(*args, env=stall, log=tmp_path / "backfill.log") as backfill:
        wait_until(
            lambda: f"{dates[1]}: published (run" in backfill.output,
            "the backfill published its second date",
            running=backfill,
        )
        release.unlink()
        third = partial(publication_in_progress, url, dates[2])
        wait_until(third, "the backfill began publishing its third date", running=backfill)
        time.sleep(0.5)  # its rows inserted; it waits before the commit for the file
        backfill.kill()
    done = {d: published(url, d)[0] for d in dates}
    assert None not in (done[dates[0]], done[dates[1]]), done
    assert done[dates[2]] is None, "the date killed before its commit was published"
    assert done[dates[3]] is None
    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    lines = _lines_by_date(resumed.stderr, dates)
    for date in dates[:2]:
        assert "already published from these inputs" in lines[date], lines[date]
    for date in dates[2:]:
        assert ": published (run" in lines[date], lines[date]
    for date in dates:
        run, rows = published(url, date, require_rows=date != dates[0])  # dates[0]: no D - 1
        assert run is not None and rows["position_risk"].height == 200
        if date in dates[:2]:
            assert run == done[date], f"{date} was published again"
        assert pipeline_runs(url, date).height == 1, f"{date} was run twice"
    if url.startswith("duckdb"):
        # A changed landing file is not "already published". The command decides what to
        # skip from the pipeline_run rows, read alike on both backends: checked once.
        positions = landing / dates[-1].isoformat() / "positions.csv"
        frame = pl.read_csv(positions)
        frame.with_columns(pl.col("quantity") * 2).write_csv(positions)
        last = published(url, dates[-1])[0]
        again = cli(*args)
        assert again.returncode == 0, again.stderr[-3000:]
        lines = _lines_by_date(again.stderr, dates)
        assert all("already published" in lines[d] for d in dates[:-1]), lines
        assert ": published (run" in lines[dates[-1]]
        assert published(url, dates[-1])[0] not in (None, last)


def _shuffled_copy(landing: Path, out: Path, seed: int) -> None:
    shutil.copytree(landing, out)
    for path in out.rglob("*.csv"):
        frame = pl.read_csv(path, infer_schema=False)
        frame.sample(fraction=1.0, shuffle=True, seed=seed).write_csv(path)


def test_shuffled_input_rows_give_identical_outputs(
    books: Books, reference: Reference, tmp_path: Path
) -> None:
    shuffled = tmp_path / "shuffled"
    _shuffled_copy(books.a, shuffled, seed=7)
    url = f"duckdb:///{tmp_path / 'shuffled.duckdb'}"
    for date in (BEFORE, D):
        positions = f"{date.isoformat()}/positions.csv"
        assert (shuffled / positions).read_bytes() != (books.a / positions).read_bytes()
        outcome = _in_process(shuffled, url, tmp_path, date)
        assert outcome.success, outcome.errors
    _, before = published(url, BEFORE)
    assert same_rows(before, reference.before), f"{BEFORE} depends on the input row order"
    _, rows = published(url, D, require_rows=True)
    for name, frame in reference.a.items():
        assert rows[name].equals(frame), f"{name} depends on the input row order"
