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
