"""The warehouse on DuckDB and PostgreSQL: atomic replacement of a date, validation,
verbatim ids, exact floats, the date lock."""

from __future__ import annotations

import datetime as dt
import threading

import polars as pl
import pytest

from pipelines.warehouse import Warehouse, WarehouseBusy, WarehouseError
from risk_core import outputs

D1, D2 = dt.date(2026, 1, 2), dt.date(2026, 1, 3)


def _quality(date: dt.date, ids: list[str], value: float = 0.1) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame(
        {
            "business_date": [date] * n,
            "run_id": ["r"] * n,
            "dataset": ids,
            "check": ["c"] * n,
            "severity": ["error"] * n,
            "success": [True] * n,
            "failed_rows": [0] * n,
            "detail": [repr(value)] * n,
        },
        schema=outputs.DATA_QUALITY.schema,
    )


def _greeks(date: dt.date, accounts: list[str], delta: float) -> pl.DataFrame:
    n = len(accounts)
    return pl.DataFrame(
        {
            "business_date": [date] * n,
            "run_id": ["r"] * n,
            "account_id": accounts,
            "underlying": ["BTC"] * n,
            "delta": [delta] * n,
            "delta_usd": [delta * 3.0] * n,
            "gamma": [1e-300] * n,
            "vega_usd": [0.1 + 0.2] * n,
            "theta_usd": [-1.0 / 3.0] * n,
        },
        schema=outputs.GREEKS_ACCOUNT.schema,
    )


def test_replace_is_atomic_and_idempotent(warehouse: Warehouse) -> None:
    warehouse.create_schema()  # upgrading a warehouse at the newest schema changes nothing
    ids = ["a", "x'; drop table greeks_account;--", 'say "select"']
    warehouse.replace_business_date(D1, {"greeks_account": _greeks(D1, ids, 0.5)})
    warehouse.replace_business_date(D2, {"greeks_account": _greeks(D2, ids, 0.7)})
    before = warehouse.read_table("greeks_account")
    assert sorted(before.filter(pl.col("business_date") == D1)["account_id"]) == sorted(ids)
    assert before["gamma"][0] == 1e-300 and before["vega_usd"][0] == 0.1 + 0.2
    # A frame that fails inside the transaction (second table) leaves everything as it was.
    bad_quality = _quality(D1, ["q"]).with_columns(pl.lit(None, pl.String).alias("check"))
    with pytest.raises(WarehouseError, match="check"):
        warehouse.replace_business_date(
            D1, {"greeks_account": _greeks(D1, ["z"], 9.0), "data_quality": bad_quality}
        )
    assert warehouse.read_table("greeks_account").equals(before)
    # A database-level failure midway (table missing) rolls back the whole date.
    with warehouse.engine.begin() as conn:
        conn.exec_driver_sql("drop view if exists v_backtest_traffic_lights")
        conn.exec_driver_sql("drop table backtest_summary")
    with pytest.raises(Exception):  # noqa: B017 - the database's own error
        warehouse.replace_business_date(
            D1,
            {
                "greeks_account": _greeks(D1, ["z"], 9.0),
                "backtest_summary": outputs.BACKTEST_SUMMARY.empty().extend(
                    pl.DataFrame(
                        {
                            "business_date": [D1],
                            "run_id": ["r"],
                            "as_of_date": [D1],
                            "model": ["m"],
                            "window_start": [D1],
                            "window_end": [D1],
                            "observations": [1],
                            "exceedances": [0],
                            "expected_exceedances": [0.0],
                            "confidence": [0.99],
                            "kupiec_pvalue": [1.0],
                            "christoffersen_pvalue": [1.0],
                            "traffic_light": ["green"],
                            "peak_to_trough": [1.0],
                            "max_increase_5d": [0.0],
                            "max_increase_30d": [0.0],
                        },
                        schema=outputs.BACKTEST_SUMMARY.schema,
                    )
                ),
            },
        )
    assert warehouse.read_table("greeks_account").equals(before)
    # Rerun: identical rows, no duplicates.
    warehouse.replace_business_date(D1, {"greeks_account": _greeks(D1, ids, 0.5)})
    assert warehouse.read_table("greeks_account").equals(before)


def test_validation_names_table_column_rows(warehouse: Warehouse) -> None:
    dup = _greeks(D1, ["a", "a"], 1.0)
    with pytest.raises(WarehouseError, match=r"greeks_account.*duplicated.*rows"):
        warehouse.replace_business_date(D1, {"greeks_account": dup})
    with pytest.raises(WarehouseError, match="business_date is not"):
        warehouse.replace_business_date(D1, {"greeks_account": _greeks(D2, ["a"], 1.0)})
    with pytest.raises(WarehouseError, match="columns differ"):
        warehouse.replace_business_date(
            D1, {"greeks_account": _greeks(D1, ["a"], 1.0).drop("gamma")}
        )


def test_date_lock_excludes_a_second_writer(warehouse: Warehouse) -> None:
    """A publication of D1 stalled inside its transaction holds D1's lock: a second
    writer of D1 waits and gives up with WarehouseBusy; D2 is free; once the first
    commits, D1 holds exactly its rows."""
    inside = threading.Event()
    release = threading.Event()

    def stall(phase: str) -> None:
        if phase == "after_delete":
            inside.set()
            assert release.wait(20)

    first = threading.Thread(
        target=lambda: warehouse.replace_business_date(
            D1, {"greeks_account": _greeks(D1, ["a", "b"], 1.0)}, on_phase=stall
        )
    )
    first.start()
    assert inside.wait(20)
    impatient = Warehouse(warehouse.url, lock_timeout_s=0.5, retry_s=5)
    with pytest.raises(WarehouseBusy, match=str(D1)):
        impatient.replace_business_date(D1, {"greeks_account": _greeks(D1, ["c"], 2.0)})
    impatient.replace_business_date(D2, {"greeks_account": _greeks(D2, ["c"], 2.0)})
    release.set()
    first.join(30)
    assert not first.is_alive()
    assert warehouse.read_table("greeks_account", D1)["account_id"].to_list() == ["a", "b"]
    assert warehouse.read_table("greeks_account", D2)["account_id"].to_list() == ["c"]


def test_replace_models_touches_only_its_models(warehouse: Warehouse) -> None:
    def rows(model: str, run: str, pnl: float) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "business_date": [D1, D2],
                "run_id": [run, run],
                "account_id": ["a", "a"],
                "model": [model, model],
                "horizon_days": [1, 1],
                "margin_usd": [1.0, 1.0],
                "pnl_usd": [pnl, pnl],
                "exceedance": [False, False],
            },
            schema=outputs.BACKTEST_RESULT.schema,
        )

    warehouse.replace_business_date(D1, {"backtest_result": rows("portfolio", "eod", 0.5).head(1)})
    warehouse.replace_models({"backtest_result": rows("backtest:x:portfolio", "h1", 0.1)})
    warehouse.replace_models({"backtest_result": rows("backtest:x:portfolio", "h2", 0.2)})
    table = warehouse.read_table("backtest_result")
    assert table.filter(pl.col("model") == "portfolio")["run_id"].to_list() == ["eod"]
    hist = table.filter(pl.col("model") == "backtest:x:portfolio")
    assert hist["run_id"].to_list() == ["h2", "h2"] and hist["pnl_usd"].to_list() == [0.2, 0.2]
    with pytest.raises(WarehouseError, match="only backtest tables"):
        warehouse.replace_models({"margin_account": outputs.MARGIN_ACCOUNT.empty()})


@pytest.mark.postgres
def test_analyst_role_reads_and_cannot_write(postgres_url: str) -> None:
    import sqlalchemy as sa

    from pipelines.cli import main

    assert main(["roles", "--warehouse", postgres_url]) == 0
    assert main(["roles", "--warehouse", postgres_url]) == 0  # idempotent
    owner = Warehouse(postgres_url)
    owner.replace_business_date(D1, {"greeks_account": _greeks(D1, ["a"], 0.5)})
    analyst_url = sa.engine.make_url(postgres_url).set(username="analyst")
    engine = sa.create_engine(analyst_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from greeks_account")).scalar() >= 1
        conn.execute(sa.text("select * from v_capital_efficiency")).fetchall()
    for statement in (
        "insert into greeks_account (business_date, account_id, underlying) "
        "values ('2026-01-05', 'x', 'BTC')",
        "update greeks_account set delta = 0",
        "delete from greeks_account",
        "drop table greeks_account",
        "drop view v_margin_calls",
        "create table sneaky (x int)",
        "truncate greeks_account",
    ):
        with (
            engine.connect() as conn,
            pytest.raises(sa.exc.ProgrammingError, match=r"denied|owner"),
        ):
            conn.execute(sa.text(statement))
    engine.dispose()
    assert owner.read_table("greeks_account", D1).height == 1


def _run_row(run_id: str, date: dt.date, finished: dt.datetime) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "run_id": [run_id],
            "business_date": [date],
            "started_at": [finished - dt.timedelta(minutes=1)],
            "finished_at": [finished],
            "status": ["success"],
            "code_version": ["test"],
            "ruleset": ["r"],
            "ruleset_sha256": ["s"],
            "inputs_sha256": [run_id],
            "landing_dir": ["landing"],
            "message": [""],
        },
        schema=outputs.PIPELINE_RUN.schema,
    )


def test_the_latest_run_is_the_last_published_whatever_its_clock(warehouse: Warehouse) -> None:
    """A run's own clock (another machine, or stamped before a wait for the lock) does not
    order publications: the warehouse stamps ``finished_at`` under the date's lock."""
    ahead = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)  # a machine whose clock runs fast
    behind = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    for run_id, clock in (("first", ahead), ("second", behind)):
        rows = _greeks(D1, ["a"], 1.0).with_columns(pl.lit(run_id).alias("run_id"))
        warehouse.replace_business_date(
            D1, {"greeks_account": rows}, pipeline_run=_run_row(run_id, D1, clock)
        )
    latest = warehouse.latest_run(D1)
    assert latest is not None and latest["run_id"] == "second"
    assert warehouse.read_table("greeks_account", D1)["run_id"].to_list() == ["second"]
    stamped = warehouse.read_table("pipeline_run").sort("finished_at")["run_id"].to_list()
    assert stamped == ["first", "second"]


def test_a_retry_after_a_lost_commit_acknowledgement_writes_nothing(warehouse: Warehouse) -> None:
    """Run A committed but did not hear it, run B published after; A's retry finds its
    pipeline_run row and leaves B's rows in place."""
    now = dt.datetime(2026, 1, 2, 12, tzinfo=dt.UTC)
    frames = {}
    for run_id, delta in (("A", 1.0), ("B", 2.0)):
        frames[run_id] = _greeks(D1, ["a", "b"], delta).with_columns(pl.lit(run_id).alias("run_id"))
        warehouse.replace_business_date(
            D1, {"greeks_account": frames[run_id]}, pipeline_run=_run_row(run_id, D1, now)
        )
    again = warehouse.replace_business_date(
        D1, {"greeks_account": frames["A"]}, pipeline_run=_run_row("A", D1, now)
    )
    assert again == {"greeks_account": 2, "pipeline_run": 1}
    assert set(warehouse.read_table("greeks_account", D1)["run_id"]) == {"B"}
    assert warehouse.read_table("pipeline_run").height == 2


def test_a_duckdb_file_held_by_another_process_is_waited_for_then_busy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """DuckDB admits one process per file: another run holding it is waited for up to the
    lock timeout (not the outage budget), then the error says another run holds it."""
    import subprocess
    import sys
    import time

    url = f"duckdb:///{tmp_path / 'held.duckdb'}"
    Warehouse(url).create_schema()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
            " time.sleep(60)",
            str(tmp_path / "held.duckdb"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        impatient = Warehouse(url, lock_timeout_s=2.0, retry_s=300.0)
        start = time.monotonic()
        with pytest.raises(WarehouseBusy, match="another run holds the warehouse"):
            impatient.replace_business_date(D1, {"greeks_account": _greeks(D1, ["a"], 1.0)})
        assert time.monotonic() - start < 30, "waited for the outage budget, not the lock's"
    finally:
        holder.kill()
        holder.wait()
    impatient.replace_business_date(D1, {"greeks_account": _greeks(D1, ["a"], 1.0)})
    assert impatient.read_table("greeks_account", D1).height == 1


@pytest.mark.postgres
def test_postgres_connections_detect_a_silent_network_cut(postgres_url: str) -> None:
    """libpq keepalives and timeouts are on (a URL's own setting wins), so a cut that drops
    packets fails, and is retried, instead of waiting without end."""
    wh = Warehouse(postgres_url)
    with wh.engine.connect() as conn:
        params = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
    assert params["keepalives"] == "1" and params["keepalives_idle"] == "30"
    assert params["connect_timeout"] == "10" and params["tcp_user_timeout"] == "60000"
    own = Warehouse(postgres_url + ("&" if "?" in postgres_url else "?") + "connect_timeout=3")
    with own.engine.connect() as conn:
        params = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
    assert params["connect_timeout"] == "3"
