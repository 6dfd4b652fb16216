"""The instrument table and position Greeks: units of contracts, inverse conventions, and
agreement of the Greeks with bump-and-reprice through the scenario engine."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from risk_core import eod
from risk_core.landing.reader import LandingData
from risk_core.landing.schemas import (
    COLLATERAL,
    INDEX_PRICES,
    INSTRUMENTS,
    MARKS,
    POSITIONS,
    PRICE_HISTORY,
)
from risk_core.market import MarketDataError, build_instrument_table
from risk_core.scenarios import ScenarioSet, revalue_coin, revalue_usd

DATE = dt.date(2024, 6, 17)
EXPIRY = dt.datetime(2024, 6, 28, 8, tzinfo=dt.UTC)


def _frame(dataset, rows):  # type: ignore[no-untyped-def]
    return pl.DataFrame(rows, schema=dataset.schema, orient="row")


def _ncdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _book() -> LandingData:
    instruments = _frame(
        INSTRUMENTS,
        [
            (
                "BTC-PERPETUAL",
                "deribit",
                "perpetual",
                "BTC",
                "inverse",
                10.0,
                "usd",
                None,
                None,
                None,
            ),
            ("BTC-28JUN24", "deribit", "future", "BTC", "inverse", 10.0, "usd", EXPIRY, None, None),
            (
                "BTC-28JUN24-70000-C",
                "deribit",
                "option",
                "BTC",
                "inverse",
                1.0,
                "base",
                EXPIRY,
                70000.0,
                "C",
            ),
            (
                "SOL_USDC-28JUN24-150-P",
                "deribit",
                "option",
                "SOL",
                "linear",
                1.0,
                "base",
                EXPIRY,
                150.0,
                "P",
            ),
            ("BTC", "deribit", "spot", "BTC", "linear", 1.0, "base", None, None, None),
        ],
    )
    marks = _frame(
        MARKS,
        [
            ("BTC-PERPETUAL", 66_050.0, None, 66_000.0),
            ("BTC-28JUN24", 66_300.0, None, 66_300.0),
            ("BTC-28JUN24-70000-C", 0.0123, 0.55, 66_250.0),
            ("SOL_USDC-28JUN24-150-P", 9.1, None, 148.0),
            ("BTC", 66_000.0, None, 66_000.0),
        ],
    )
    index = _frame(INDEX_PRICES, [("BTC", 66_000.0), ("SOL", 148.2), ("USDC", 1.0)])
    positions = _frame(
        POSITIONS,
        [
            ("A1", "BTC-PERPETUAL", 1_000.0),
            ("A1", "BTC-28JUN24", -500.0),
            ("A2", "BTC-28JUN24-70000-C", 2.5),
            ("A2", "SOL_USDC-28JUN24-150-P", -10.0),
            ("A3", "BTC", 0.5),
        ],
    )
    collateral = _frame(COLLATERAL, [("A1", "BTC", 1.0), ("A4", "USDC", 100.0)])
    history = _frame(PRICE_HISTORY, [(DATE, "BTC", 66_000.0)])
    return LandingData(DATE, instruments, marks, index, positions, collateral, history)


def test_units_and_inverse_future_delta() -> None:
    data = _book()
    inputs = eod.margin_inputs(data, eod.instrument_table(data))
    greeks = eod.position_greeks(inputs).sort("account_id", "instrument_id")
    perp = greeks.filter(pl.col("instrument_id") == "BTC-PERPETUAL").row(0, named=True)
    # 1,000 contracts of 10 USD at a mark of 66,050 USD: 10,000 USD / 66,050 coins.
    assert perp["delta"] == pytest.approx(1_000 * 10 / 66_050, rel=1e-12)
    assert perp["delta_usd"] == pytest.approx(perp["delta"] * 66_000.0, rel=1e-12)
    assert perp["market_value_usd"] == 0.0
    spot = greeks.filter(pl.col("instrument_id") == "BTC").row(0, named=True)
    assert spot["delta"] == 0.5 and spot["market_value_usd"] == pytest.approx(33_000.0)
    assert inputs.positions.accounts == ("A1", "A2", "A3", "A4")


def test_option_greeks_are_black76_times_size() -> None:
    data = _book()
    table = eod.instrument_table(data)
    inputs = eod.margin_inputs(data, table)
    row = (
        eod.position_greeks(inputs)
        .filter(pl.col("instrument_id") == "BTC-28JUN24-70000-C")
        .row(0, named=True)
    )
    t = (EXPIRY - dt.datetime(2024, 6, 17, tzinfo=dt.UTC)).total_seconds() / (365 * 86400)
    s = 0.55 * math.sqrt(t)
    d1 = math.log(66_250 / 70_000) / s + s / 2
    assert row["delta"] == pytest.approx(2.5 * _ncdf(d1), rel=1e-12)
    pdf = math.exp(-d1 * d1 / 2) / math.sqrt(2 * math.pi)
    assert row["vega_usd"] == pytest.approx(2.5 * 66_250 * pdf * math.sqrt(t) * 0.01, rel=1e-12)
    # Inverse option: market value is the coin mark times the forward.
    assert row["market_value_usd"] == pytest.approx(2.5 * 0.0123 * 66_250, rel=1e-12)


def test_missing_iv_is_solved_from_price() -> None:
    data = _book()
    table = eod.instrument_table(data)
    i = list(table.instrument_id).index("SOL_USDC-28JUN24-150-P")
    assert table.iv_solved[i]
    from risk_core.pricing import black76

    repriced = black76.price(148.0, 150.0, table.t[i], table.sigma[i], False)
    assert float(repriced) == pytest.approx(9.1, rel=1e-9)


def test_unsolvable_iv_is_reported_not_hidden() -> None:
    data = _book()
    marks = data.marks.with_columns(
        pl.when(pl.col("instrument_id") == "SOL_USDC-28JUN24-150-P")
        .then(500.0)  # above the put's upper bound (the strike)
        .otherwise(pl.col("mark_price"))
        .alias("mark_price")
    )
    with pytest.raises(MarketDataError, match="SOL_USDC-28JUN24-150-P"):
        build_instrument_table(data.instruments, marks, data.index_prices, DATE)


def test_greeks_match_bump_and_reprice() -> None:
    data = _book()
    table = eod.instrument_table(data)
    g = table.unit_greeks()
    h = 1e-4
    moves = np.array([[h, -h]] * len(table.underlyings))
    pnl = revalue_usd(table, ScenarioSet(("up", "down"), moves))
    numeric_delta = (pnl[:, 0] - pnl[:, 1]) / (2 * h * table.forward)
    np.testing.assert_allclose(numeric_delta, g.delta, rtol=1e-6, atol=1e-12)
    numeric_gamma = (pnl[:, 0] + pnl[:, 1]) / (h * table.forward) ** 2
    np.testing.assert_allclose(numeric_gamma, g.gamma, rtol=1e-4, atol=1e-12)


def test_inverse_future_coin_pnl() -> None:
    data = _book()
    table = eod.instrument_table(data)
    moves = np.array([[-0.16, 0.5]] * len(table.underlyings))
    coin = revalue_coin(table, ScenarioSet(("down", "up"), moves))
    i = list(table.instrument_id).index("BTC-PERPETUAL")
    q = 10.0 / 66_050.0
    np.testing.assert_allclose(coin[i], [q * -0.16 / 0.84, q * 0.5 / 1.5], rtol=1e-14)
    usd = revalue_usd(table, ScenarioSet(("down", "up"), moves))
    np.testing.assert_allclose(usd[i], [10.0 * -0.16, 10.0 * 0.5], rtol=1e-12)


def test_price_at_intrinsic_takes_the_surface_vol() -> None:
    data = _book()
    put = (
        "BTC-28JUN24-90000-P",
        "deribit",
        "option",
        "BTC",
        "inverse",
        1.0,
        "base",
        EXPIRY,
        90_000.0,
        "P",
    )
    instruments = pl.concat([data.instruments, _frame(INSTRUMENTS, [put])])
    at_intrinsic = (90_000.0 - 66_250.0) / 66_250.0  # coin: time value lost to rounding
    marks = pl.concat([data.marks, _frame(MARKS, [(put[0], at_intrinsic, None, 66_250.0)])])
    table = build_instrument_table(instruments, marks, data.index_prices, DATE)
    i = list(table.instrument_id).index(put[0])
    assert table.iv_solved[i] and table.sigma[i] == pytest.approx(0.55)  # the BTC smile
    below = marks.with_columns(
        pl.when(pl.col("instrument_id") == put[0])
        .then(at_intrinsic * 0.9)
        .otherwise(pl.col("mark_price"))
        .alias("mark_price")
    )
    with pytest.raises(MarketDataError, match=put[0]):
        build_instrument_table(instruments, below, data.index_prices, DATE)


def test_a_scenario_pnl_that_is_not_a_number_stops_the_revaluation() -> None:
    """A NaN would drop out of a tail search silently: the error names the instrument."""
    table = eod.instrument_table(_book())
    i = list(table.instrument_id).index("BTC-PERPETUAL")
    table.units[i] = np.nan
    moves = np.array([[-0.1, 0.1]] * len(table.underlyings))
    for revalue in (revalue_usd, revalue_coin):
        with pytest.raises(ValueError, match=r"1 instrument.*BTC-PERPETUAL"):
            revalue(table, ScenarioSet(("down", "up"), moves))
