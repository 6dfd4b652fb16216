"""The backtest at scale: the window's summary from warehouse aggregates, column-wise
reads, the vectorized instrument mapping, each against its slow reference.

References: ``summarize`` (the plain loop over every account's rows) for the summary,
``stats.Transitions.of`` on each account's sequence for the transition counts, the
previous row-by-row ``read_table`` for reads, per-position dictionary lookups for the
instrument mapping of ``position_pnl``. Warehouse tests run on DuckDB and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa
from polars.testing import assert_frame_equal

from pipelines.warehouse import Warehouse, WarehouseError
from risk_core import eod, outputs
from risk_core.backtest import stats
from risk_core.backtest.daily import _rows_in, position_pnl
from risk_core.backtest.summary import (
    WindowAggregates,
    stored_dates_needed,
    summarize,
    summarize_window,
    window_daily_totals,
)
from risk_core.landing.generator import generate_landing
from risk_core.landing.reader import read_landing
from risk_core.market import KIND_OPTION, KIND_SPOT, InstrumentTable, build_instrument_table

START = dt.date(2026, 3, 2)
MODELS = ("portfolio", "standard", "hs_es")


def _history(seed: int, dates: int, accounts: int) -> pl.DataFrame:
    """backtest_result rows (without run_id) of ``dates`` consecutive days: every
    account misses some dates (gaps), exceedances cluster (a two-state chain per account
    and model, so that consecutive exceedances occur), a few exceedances are null."""
    rng = np.random.default_rng(seed)
    rows = []
    state = {(a, m): False for a in range(accounts) for m in MODELS}
    for day in range(dates):
        date = START + dt.timedelta(days=day)
        for account in range(accounts):
            for model in MODELS:
                if rng.random() < 0.25:  # no row that day
                    continue
                hit = rng.random() < (0.5 if state[(account, model)] else 0.15)
                state[(account, model)] = hit
                margin = float(rng.uniform(50.0, 150.0))
                pnl = -margin * float(rng.uniform(1.01, 2.0) if hit else rng.uniform(-1.0, 0.99))
                rows.append(
                    (date, f"ACC{account:04d}", model, 1, margin, pnl, None if day == 3 else hit)
                )
    columns = ["business_date", "account_id", "model", "horizon_days", "margin_usd", "pnl_usd"]
    schema = outputs.BACKTEST_RESULT.schema
    return pl.DataFrame(
        rows, schema={c: schema[c] for c in [*columns, "exceedance"]}, orient="row"
    ).sort("business_date", "account_id", "model")


def _publish(warehouse: Warehouse, rows: pl.DataFrame) -> None:
    for date in sorted(set(rows["business_date"].to_list())):
        day = rows.filter(pl.col("business_date") == date).with_columns(
            pl.lit("run").alias("run_id")
        )
        warehouse.replace_business_date(date, {"backtest_result": day})


def _fast(
    warehouse: Warehouse, today: pl.DataFrame, as_of: dt.date, window_days: int
) -> pl.DataFrame:
    stored = warehouse.read_backtest_window(as_of, stored_dates_needed(today, window_days))
    return summarize_window(stored, today, as_of, 0.99, window_days)


def _assert_same_summary(fast: pl.DataFrame, slow: pl.DataFrame) -> None:
    """Counts, dates and lights exact; p-values and margin ratios to 1e-10 (the stored
    daily totals are exact decimal sums to 1e-12 USD, the reference sums floats)."""
    assert fast.columns == slow.columns and fast.height == slow.height > 0
    assert_frame_equal(fast, slow, check_exact=False, rel_tol=1e-10, abs_tol=1e-12)


@pytest.mark.integration
def test_fast_summary_equals_summarize(warehouse: Warehouse) -> None:
    history = _history(seed=11, dates=9, accounts=12)
    dates = sorted(set(history["business_date"].to_list()))
    as_of = dates[-1]
    stored, today = (
        history.filter(pl.col("business_date") < as_of),
        history.filter(pl.col("business_date") == as_of),
    )
    _publish(warehouse, stored)
    # Windows shorter than the history, the whole history, longer than it.
    for window_days in (1, 2, 4, 8, 9, 30):
        slow = summarize(history, as_of, 0.99, window_days)
        _assert_same_summary(_fast(warehouse, today, as_of, window_days), slow)
    # No rows today: the window is the stored dates alone.
    empty = outputs.BACKTEST_RESULT.empty().drop("run_id")
    for window_days in (3, 8):
        slow = summarize(stored, as_of, 0.99, window_days)
        _assert_same_summary(_fast(warehouse, empty, as_of, window_days), slow)
    # Rows stored for today (a rerun of the date) do not count twice.
    _publish(warehouse, today)
    _assert_same_summary(_fast(warehouse, today, as_of, 5), summarize(history, as_of, 0.99, 5))


@pytest.mark.integration
def test_stored_transitions_are_those_of_every_account_sequence(warehouse: Warehouse) -> None:
    """The warehouse's transition counts against ``Transitions.of`` on each account's
    date-ordered sequence (gaps close up; a null exceedance counts as none)."""
    history = _history(seed=5, dates=7, accounts=9)
    _publish(warehouse, history)
    before = START + dt.timedelta(days=7)
    window = warehouse.read_backtest_window(before, 5)
    dates = sorted(set(history["business_date"].to_list()))[-5:]
    assert window.dates == tuple(dates)
    rows = history.filter(pl.col("business_date").is_in(dates))
    for model in MODELS:
        expected = stats.Transitions(0, 0, 0, 0)
        latest = {}
        mine = rows.filter(pl.col("model") == model).sort("account_id", "business_date")
        for (account,), group in mine.group_by("account_id", maintain_order=True):
            sequence = [bool(e) for e in group["exceedance"].to_list()]
            expected = expected + stats.Transitions.of(sequence)
            latest[account] = sequence[-1]
        got = window.accounts.filter(pl.col("model") == model)
        summed = got.select("n00", "n01", "n10", "n11").sum().row(0)
        assert stats.Transitions(*summed) == expected
        assert dict(got.select("account_id", "last_exceedance").iter_rows()) == latest
        assert got["observations"].sum() == mine.height
        daily = window.daily.filter(pl.col("model") == model).sort("business_date")
        for date, margin in daily.select("business_date", "margin_usd").iter_rows():
            day = mine.filter(pl.col("business_date") == date)["margin_usd"].to_list()
            assert margin == pytest.approx(math.fsum(day), rel=1e-14)
    nothing = warehouse.read_backtest_window(before, 0)
    assert nothing.dates == () and nothing.accounts.is_empty() and nothing.daily.is_empty()
    assert nothing.accounts.schema == window.accounts.schema


@pytest.mark.integration
def test_window_of_the_asset_across_models_and_dates(warehouse: Warehouse) -> None:
    """A model that stops, a model that starts today, accounts new today: the window's
    dates are those of every model, as in ``summarize``."""
    history = _history(seed=3, dates=6, accounts=5)
    old_model = history.filter(
        (pl.col("model") == "standard") & (pl.col("business_date") < START + dt.timedelta(2))
    ).with_columns(pl.lit("retired").alias("model"))
    as_of = START + dt.timedelta(days=6)
    today = pl.DataFrame(
        {
            "business_date": [as_of] * 3,
            "account_id": ["ACC0000", "ACC0001", "NEW"],
            "model": ["portfolio", "newcomer", "portfolio"],
            "horizon_days": [1, 1, 1],
            "margin_usd": [10.0, 20.0, 30.0],
            "pnl_usd": [-11.0, 0.0, -40.0],
            "exceedance": [True, False, True],
        },
        schema={c: t for c, t in outputs.BACKTEST_RESULT.schema.items() if c != "run_id"},
    )
    stored = pl.concat([history, old_model])
    _publish(warehouse, stored)
    combined = pl.concat([stored, today])
    for window_days in (2, 5, 7):
        slow = summarize(combined, as_of, 0.99, window_days)
        _assert_same_summary(_fast(warehouse, today, as_of, window_days), slow)
    totals = window_daily_totals(warehouse.read_backtest_window(as_of, 6), today)
    expected = combined.group_by("business_date", "model").agg(pl.col("margin_usd").sum())
    joined = totals.join(expected, on=["business_date", "model"], how="full", coalesce=True)
    assert joined.height == expected.height == totals.height
    assert np.allclose(joined["margin_usd"], joined["margin_usd_right"], rtol=1e-12)


def test_summarize_window_refuses_overlapping_or_oversized_windows() -> None:
    history = _history(seed=1, dates=4, accounts=3)
    today = history.filter(pl.col("business_date") == START + dt.timedelta(days=3))
    stored = WindowAggregates(
        (START, START + dt.timedelta(days=3)),
        WindowAggregates.empty().accounts,
        WindowAggregates.empty().daily,
    )
    with pytest.raises(ValueError, match="stored dates reach"):
        summarize_window(stored, today, START, 0.99, 10)
    stored = dataclasses.replace(stored, dates=(START, START + dt.timedelta(days=1)))
    with pytest.raises(ValueError, match="exceed the window"):
        summarize_window(stored, today, START, 0.99, 2)


# -- read_table --------------------------------------------------------------------------


def _read_table_row_by_row(warehouse: Warehouse, name: str, date: dt.date | None) -> pl.DataFrame:
    """The previous ``Warehouse.read_table``: Python tuples, row by row."""
    table = outputs.BY_NAME[name]
    columns = ", ".join(f'"{c}"' for c in table.columns)
    sql = f"select {columns} from {table.name}"
    params: dict[str, object] = {}
    if date is not None:
        sql += " where business_date = :business_date"
        params["business_date"] = date
    sql += " order by " + ", ".join(f'"{k}"' for k in table.key)
    with warehouse.engine.connect() as conn:
        rows = conn.execute(sa.text(sql), params).fetchall()
    frame = pl.DataFrame([tuple(r) for r in rows], schema=list(table.columns), orient="row")
    return frame.cast(table.columns, strict=False)  # type: ignore[arg-type]


AWKWARD_TEXT = ["", 'say "hi"', "a,b", "two\nlines\r\n", "NULL", "\\N", "é ü 😀", " pad "]
AWKWARD_FLOATS = [0.1 + 0.2, 1e-300, 5e-324, -0.0, 1.7976931348623157e308, -1 / 3, 123456.789]


def _awkward_tables(date: dt.date) -> dict[str, pl.DataFrame]:
    n = len(AWKWARD_TEXT)
    floats = (AWKWARD_FLOATS * 2)[:n]
    quality = pl.DataFrame(
        {
            "business_date": [date] * n,
            "run_id": [None, *AWKWARD_TEXT[1:]],
            "dataset": AWKWARD_TEXT,
            "check": [f"c{i}" for i in range(n)],
            "severity": [None, *AWKWARD_TEXT[:-1]],
            "success": [True, False, None, True, False, True, None, False],
            "failed_rows": [0, -1, 2**62, None, 5, 6, 7, 8],
            "detail": AWKWARD_TEXT[::-1],
        },
        schema=outputs.DATA_QUALITY.schema,
    )
    expiry = dt.datetime(2026, 6, 26, 8, 0, 0, 123456, tzinfo=dt.UTC)
    risk = pl.DataFrame(
        {
            "business_date": [date] * n,
            "run_id": ["r"] * n,
            "account_id": [f"A{i % 3}" for i in range(n)],
            "instrument_id": [f"I{i}" for i in range(n)],
            **{
                c: floats
                for c, t in outputs.POSITION_RISK.columns.items()
                if t == pl.Float64 and c != "mark_iv"
            },
            "mark_iv": [None, *floats[1:]],
            "underlying": AWKWARD_TEXT,
            "kind": ["option"] * n,
            "settlement": [None] * n,
            "expiry": [expiry, None, *[expiry + dt.timedelta(days=i) for i in range(n - 2)]],
            "mark_iv_solved": [True, False, None, True, False, True, True, False],
        },
        schema=outputs.POSITION_RISK.schema,
    )
    return {"data_quality": quality, "position_risk": risk}


@pytest.mark.integration
def test_read_table_equals_the_row_by_row_read(warehouse: Warehouse) -> None:
    d1, d2 = START, START + dt.timedelta(days=1)
    for date in (d1, d2):
        warehouse.replace_business_date(date, _awkward_tables(date))
    history = _history(seed=2, dates=3, accounts=40).with_columns(pl.lit("r").alias("run_id"))
    _publish(warehouse, history)
    run = pl.DataFrame(
        {
            "run_id": ["r1", "r2"],
            "business_date": [d1, None],
            "started_at": [dt.datetime(2026, 3, 2, 0, 30, 1, 5, tzinfo=dt.UTC), None],
            "finished_at": [None, dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)],
            "status": ["success", ""],
            "code_version": ["abc", None],
            "ruleset": ["cross-margin", "x"],
            "ruleset_sha256": ["0" * 64, "1" * 64],
            "inputs_sha256": ["{}", '{"a": "b"}'],
            "landing_dir": ["/tmp/l", "/tmp/m"],
            "message": ["two\nlines", None],
        },
        schema=outputs.PIPELINE_RUN.schema,
    )
    warehouse.replace_business_date(d2, {}, pipeline_run=run)
    for name in ("data_quality", "position_risk", "backtest_result", "pipeline_run"):
        for date in (None, d1, d2, START - dt.timedelta(days=1)):
            fast = warehouse.read_table(name, date)
            slow = _read_table_row_by_row(warehouse, name, date)
            assert fast.schema == slow.schema == outputs.BY_NAME[name].schema
            assert fast.equals(slow), (name, date)
    full = warehouse.read_table("position_risk", d1)
    assert full["account_id"].is_sorted() and full.height == len(AWKWARD_TEXT)
    as_written = full.sort("instrument_id")  # I0 ... I7: the order written
    assert as_written["underlying"].to_list() == AWKWARD_TEXT
    assert as_written["gamma"].to_list()[: len(AWKWARD_FLOATS)] == AWKWARD_FLOATS
    some = ["margin_contribution_usd", "account_id", "expiry"]
    assert warehouse.read_table("position_risk", d1, columns=some).equals(full.select(some))
    for wrong in (["nope"], [], ["account_id", "account_id"]):
        with pytest.raises(WarehouseError, match="cannot read columns"):
            warehouse.read_table("position_risk", d1, columns=wrong)


@pytest.mark.integration
def test_read_table_keeps_non_finite_floats(warehouse: Warehouse) -> None:
    values = [math.nan, math.inf, -math.inf, None]
    frame = pl.DataFrame(
        {
            "business_date": [START] * 4,
            "run_id": ["r"] * 4,
            "account_id": ["a", "b", "c", "d"],
            "underlying": ["BTC"] * 4,
            **{c: values for c in ("delta", "delta_usd", "gamma", "vega_usd", "theta_usd")},
        },
        schema=outputs.GREEKS_ACCOUNT.schema,
    )
    warehouse.replace_business_date(START, {"greeks_account": frame})
    fast = warehouse.read_table("greeks_account", START)
    slow = _read_table_row_by_row(warehouse, "greeks_account", START)
    for got in (fast, slow):
        delta = got["delta"].to_list()
        assert math.isnan(delta[0]) and delta[1:] == [math.inf, -math.inf, None]
    assert fast.schema == slow.schema


# -- position_pnl ------------------------------------------------------------------------


def _table_without(data: object, drop: pl.Expr) -> InstrumentTable:
    """The instrument table of ``data`` without the instruments ``drop`` selects."""
    instruments = data.instruments.filter(~drop)  # type: ignore[attr-defined]
    marks = data.marks.filter(  # type: ignore[attr-defined]
        pl.col("instrument_id").is_in(instruments["instrument_id"].implode())
    )
    return build_instrument_table(
        instruments,
        marks,
        data.index_prices,
        data.business_date,  # type: ignore[attr-defined]
    )


@pytest.mark.integration
def test_position_pnl_maps_rows_like_a_dictionary_per_position(tmp_path: Path) -> None:
    """The vectorized mapping of ``position_pnl`` (an instrument's row on the later date,
    its underlying's index row; -1 where none) against dictionary lookups row by row; the
    valuation itself is checked by hand in ``tests/risk_core/test_backtest_daily.py``."""
    d0, d1 = dt.date(2026, 3, 5), dt.date(2026, 3, 6)
    for date in (d0, d1):
        generate_landing(tmp_path, date, accounts=60, positions=3_000, seed=4)
    before, after = read_landing(tmp_path, d0), read_landing(tmp_path, d1)
    table_before = eod.instrument_table(before)
    # Every fourth instrument no longer quoted on d1: valued from the index move.
    ids = sorted(set(after.instruments["instrument_id"].to_list()))
    gone = pl.col("instrument_id").is_in(ids[::4])
    table_after = _table_without(after, gone)
    assert len(table_after) < len(eod.instrument_table(after))
    for keys, rows in (
        (table_before.instrument_id, table_after.instrument_id),
        (table_before.underlying, table_after.underlying),
    ):
        first: dict[str, int] = {}
        for n, key in enumerate(rows):
            first.setdefault(str(key), n)
        want = np.array([first.get(str(key), -1) for key in keys])
        np.testing.assert_array_equal(_rows_in(keys, rows), want)
    assert (_rows_in(table_before.instrument_id, table_after.instrument_id) == -1).any()
    code = table_before.codes(before.positions["instrument_id"])
    q = before.positions["quantity"].to_numpy()
    after_row = {str(i): n for n, i in enumerate(table_after.instrument_id)}
    for elapsed in (1.0, 400.0):  # 400 days: every option of d0 has expired
        pnl = position_pnl(before.positions, table_before, table_after, elapsed)
        assert pnl.shape == (before.positions.height,)
        assert np.isfinite(pnl).all()
        # a future or perpetual still quoted: units x the change of its own forward
        checked = 0
        for p in range(len(code)):
            i = code[p]
            row = after_row.get(str(table_before.instrument_id[i]))
            if row is None or table_before.kind[i] in (KIND_OPTION, KIND_SPOT):
                continue
            change = table_after.forward[row] - table_before.forward[i]
            assert pnl[p] == pytest.approx(q[p] * table_before.units[i] * change, rel=1e-12)
            checked += 1
        assert checked > 50
    # An underlying without an index on d1: refused, naming it.
    unlisted = sorted(set(before.instruments["underlying"].to_list()))[0]
    no_index = dataclasses.replace(
        after,
        index_prices=after.index_prices.filter(pl.col("underlying") != unlisted),
    )
    table_no_index = _table_without(no_index, pl.col("underlying") == unlisted)
    with pytest.raises(ValueError, match=f"no index price.*{unlisted}"):
        position_pnl(before.positions, table_before, table_no_index, 1.0)
