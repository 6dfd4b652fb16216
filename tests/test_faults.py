"""Faults, on DuckDB and PostgreSQL: a run killed anywhere, reruns, two runs of one date
at once, PostgreSQL cut or down mid-publication, an interrupted backfill, shuffled input
files. After each, every business date is whole: its old rows or its new rows, never a
mix, never duplicates (``support.published`` asserts it on every read)."""

from __future__ import annotations

import datetime as dt
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from risk_core.landing.generator import generate_landing
from tests.support import cli, pipeline_runs, proxied, published, same_rows, spawn

pytestmark = [pytest.mark.integration, pytest.mark.slow]
D = dt.date(2026, 11, 20)


@dataclass(frozen=True)
class Books:
    a: Path  #: landing zone with book A for D
    b: Path  #: landing zone with another book (B) for the same date


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> Books:
    root = tmp_path_factory.mktemp("fault-books")
    generate_landing(root / "a", D, accounts=30, positions=400, seed=21)
    generate_landing(root / "b", D, accounts=35, positions=450, seed=22)
    return Books(root / "a", root / "b")


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


#: failpoint -> what the date must hold after a SIGKILL there
KILL_POINTS = [
    ("ingest", "old"),
    ("compute", "old"),
    ("publish.after_delete", "old"),
    ("publish.before_commit", "old"),
    ("publish.after_commit", "new"),
]


def test_a_run_killed_anywhere_leaves_the_date_old_or_new(
    books: Books, url: str, tmp_path: Path
) -> None:
    first = cli(*_run_args(books.a, url, tmp_path))
    assert first.returncode == 0, first.stderr
    run_a, old = published(url, D)
    assert run_a is not None
    new: dict[str, pl.DataFrame] = {}
    # Before the publication the warehouse is only read: PostgreSQL needs just the
    # publication's points (DuckDB covers the others).
    points = KILL_POINTS if url.startswith("duckdb") else KILL_POINTS[2:]
    for point, expect in points:
        killed = cli(*_run_args(books.b, url, tmp_path), env={"MARGIN_FAILPOINTS": f"{point}=kill"})
        assert killed.returncode == -signal.SIGKILL, f"{point}: {killed.stderr[-2000:]}"
        run, rows = published(url, D)  # whole, whatever it holds
        if expect == "old":
            assert run == run_a and same_rows(rows, old), f"killed at {point}: the date changed"
        else:
            assert run != run_a and not same_rows(rows, old), f"killed at {point}: not replaced"
            new = rows
    again = cli(*_run_args(books.b, url, tmp_path))
    assert again.returncode == 0, again.stderr
    run_b, rows = published(url, D)
    assert run_b not in (None, run_a)
    assert same_rows(rows, new), "a normal run after the kills publishes the same rows"
    assert rows["position_risk"].height == 450


def test_kills_at_random_moments(books: Books, tmp_path: Path) -> None:
    """SIGKILL from outside at random moments of the run (DuckDB)."""
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    start = time.monotonic()
    assert cli(*_run_args(books.a, url, tmp_path)).returncode == 0
    duration = time.monotonic() - start
    run_a, old = published(url, D)
    rng = random.Random(20261120)
    for _ in range(2):
        process = spawn(*_run_args(books.b, url, tmp_path))
        time.sleep(rng.uniform(0.2, 1.1) * duration)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=120)
        run, rows = published(url, D)
        assert (run == run_a and same_rows(rows, old)) or (
            run != run_a and rows["position_risk"].height == 450
        )
    assert cli(*_run_args(books.b, url, tmp_path)).returncode == 0
    assert published(url, D)[1]["position_risk"].height == 450


def test_rerun_is_idempotent_byte_for_byte(books: Books, url: str, tmp_path: Path) -> None:
    first = _in_process(books.a, url, tmp_path)
    assert first.success, first.errors
    _, rows = published(url, D)
    second = _in_process(books.a, url, tmp_path)
    assert second.success, second.errors
    run, again = published(url, D)
    assert run == second.run_id
    for name, frame in rows.items():
        assert again[name].equals(frame), f"{name} changed on a rerun of the same inputs"
    runs = pipeline_runs(url, D)
    assert sorted(runs["run_id"]) == sorted([first.run_id, second.run_id])
    assert runs["inputs_sha256"].n_unique() == 1 and runs["ruleset_sha256"].n_unique() == 1


def test_two_runs_of_one_date_at_once_never_interleave(
    books: Books, url: str, tmp_path: Path
) -> None:
    """Both start together and stall inside their publication; one waits for the other's
    lock, both succeed, the date holds one run's rows."""
    reference = tmp_path / "ref.duckdb"
    assert _in_process(books.a, f"duckdb:///{reference}", tmp_path).success
    _, expected = published(f"duckdb:///{reference}", D)
    stall = {"MARGIN_FAILPOINTS": "publish.after_delete=sleep:3"}
    processes = [spawn(*_run_args(books.a, url, tmp_path), env=stall) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    run, rows = published(url, D)
    assert same_rows(rows, expected)
    runs = pipeline_runs(url, D)
    assert runs.height == 2 and run in set(runs["run_id"])


def test_a_second_run_that_cannot_wait_fails_clearly(
    books: Books, url: str, tmp_path: Path
) -> None:
    first = spawn(
        *_run_args(books.a, url, tmp_path),
        # long enough for the second run (imports, validation, models) to reach its lock
        env={"MARGIN_FAILPOINTS": "publish.after_delete=sleep:30"},
    )
    try:
        # wait until the first run is inside its publication
        deadline = time.monotonic() + 300
        held = 0
        while held < 3 and time.monotonic() < deadline:
            held = held + 1 if publication_in_progress(url, tmp_path) else 0
            time.sleep(0.5)
        assert held == 3, "the first run never reached its publication"
        second = cli(
            *_run_args(books.b, url, tmp_path),
            env={"MARGIN_WAREHOUSE_LOCK_TIMEOUT_S": "1", "MARGIN_WAREHOUSE_RETRY_S": "2"},
        )
    finally:
        out = first.communicate(timeout=600)[0]
    assert first.returncode == 0, out
    assert second.returncode == 1
    message = second.stdout + second.stderr
    assert "FAILED, nothing published" in message
    assert "another run of 2026-11-20 is publishing it" in message or (
        "unavailable" in message and "lock" in message
    ), message[-3000:]
    _run, rows = published(url, D)
    assert rows["position_risk"].height == 400  # book A, whole


def publication_in_progress(url: str, tmp_path: Path) -> bool:
    """Whether a publication of D is in progress: its artefacts exist (the landing step
    ran) and its lock is taken (DuckDB: the file is held; PostgreSQL: the advisory lock)."""
    import sqlalchemy as sa

    if not (tmp_path / "artefacts" / "data_docs" / D.isoformat()).exists():
        return False
    if url.startswith("duckdb"):
        import duckdb

        try:
            duckdb.connect(url.removeprefix("duckdb:///")).close()
        except duckdb.IOException:
            return True
        return False
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            held = conn.execute(
                sa.text("select count(*) from pg_locks where locktype = 'advisory'")
            )
            return bool(held.scalar())
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_cut_mid_publication_is_retried(
    books: Books, fresh_postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection dropped inside the publication's transaction and the server
    unreachable for 3 s (a restart): the transaction is retried whole and succeeds."""
    import assets.publish

    with proxied(fresh_postgres_url) as (proxy, url):
        assert _in_process(books.a, url, tmp_path).success
        cuts: list[float] = []

        def restart(phase: str) -> None:
            if phase == "after_delete" and not cuts:
                cuts.append(time.monotonic())
                proxy.refuse()
                threading.Timer(3.0, proxy.accept).start()

        monkeypatch.setattr(assets.publish, "publish_phase", restart)
        outcome = _in_process(books.b, url, tmp_path)
        assert outcome.success, outcome.errors
        assert cuts, "the cut happened"
        run, rows = published(url, D)
        assert run == outcome.run_id and rows["position_risk"].height == 450
        runs = pipeline_runs(url, D)
        assert runs.height == 2 and set(runs["run_id"]) >= {outcome.run_id}


@pytest.mark.postgres
def test_postgres_down_fails_cleanly_and_publishes_nothing(
    books: Books, fresh_postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import assets.publish

    with proxied(fresh_postgres_url) as (proxy, url):
        assert _in_process(books.a, url, tmp_path).success
        run_a, old = published(url, D)

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
        assert "unavailable, gave up after" in text and "publish 2026-11-20" in text, text
        proxy.accept()
        run, rows = published(url, D)
        assert run == run_a and same_rows(rows, old)
        assert pipeline_runs(url, D).height == 1


def test_an_interrupted_backfill_resumes_with_the_missing_dates(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    dates = [D - dt.timedelta(days=4 - i) for i in range(5)]
    for date in dates:
        generate_landing(landing, date, accounts=20, positions=200, seed=5)
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
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
    process = spawn(*args)
    assert process.stdout is not None
    seen = 0
    for line in process.stdout:
        seen += ": published (run" in line
        if seen == 2:
            process.send_signal(signal.SIGKILL)
            break
    process.communicate(timeout=120)
    done = [d for d in dates if published(url, d)[0] is not None]
    assert 2 <= len(done) < len(dates)
    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    for date in dates:
        line = next(x for x in resumed.stderr.splitlines() if x.startswith(date.isoformat()))
        if date in done:
            assert "already published from these inputs" in line
        else:
            assert ": published (run" in line
    for date in dates:
        run, rows = published(url, date)
        assert run is not None and rows["position_risk"].height == 200
        assert pipeline_runs(url, date).height == 1, f"{date} was run twice"
    # a changed landing file is not "already published"
    shutil.copy(landing / dates[0].isoformat() / "positions.csv", tmp_path / "positions.csv")
    frame = pl.read_csv(tmp_path / "positions.csv")
    frame.with_columns(pl.col("quantity") * 2).write_csv(
        landing / dates[0].isoformat() / "positions.csv"
    )
    again = cli(*args)
    assert again.returncode == 0
    assert f"{dates[0]}: published (run" in again.stderr
    assert sum("already published" in x for x in again.stderr.splitlines()) == len(dates) - 1


def _shuffled_copy(landing: Path, out: Path, seed: int) -> None:
    shutil.copytree(landing, out)
    for path in out.rglob("*.csv"):
        frame = pl.read_csv(path, infer_schema=False)
        frame.sample(fraction=1.0, shuffle=True, seed=seed).write_csv(path)


def test_shuffled_input_rows_give_identical_outputs(books: Books, tmp_path: Path) -> None:
    urls = {}
    for label, landing in (("as given", books.a), ("shuffled", tmp_path / "shuffled")):
        if label == "shuffled":
            _shuffled_copy(books.a, landing, seed=7)
            assert (landing / D.isoformat() / "positions.csv").read_bytes() != (
                books.a / D.isoformat() / "positions.csv"
            ).read_bytes()
        urls[label] = f"duckdb:///{tmp_path / label.replace(' ', '_')}.duckdb"
        outcome = _in_process(landing, urls[label], tmp_path)
        assert outcome.success, outcome.errors
    _, given = published(urls["as given"], D)
    _, shuffled = published(urls["shuffled"], D)
    for name, frame in given.items():
        assert shuffled[name].equals(frame), f"{name} depends on the input row order"
