"""The daily backtest: P&L of yesterday's book at today's marks, against its margin."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from risk_core import eod
from risk_core.backtest.daily import daily_backtest
from risk_core.landing.reader import LandingData
from risk_core.landing.schemas import (
    COLLATERAL,
    INDEX_PRICES,
    INSTRUMENTS,
    MARKS,
    POSITIONS,
    PRICE_HISTORY,
)
from risk_core.pricing import black76

D0, D1 = dt.date(2024, 6, 17), dt.date(2024, 6, 18)
EXP = dt.datetime(2024, 6, 28, 8, tzinfo=dt.UTC)
NEAR = dt.datetime(2024, 6, 17, 8, tzinfo=dt.UTC)  # expires between D0 and D1


def _f(ds, rows):  # type: ignore[no-untyped-def]
    return pl.DataFrame(rows, schema=ds.schema, orient="row")


INSTR = [
    ("BTC-PERPETUAL", "deribit", "perpetual", "BTC", "inverse", 10.0, "usd", None, None, None),
    ("BTC-28JUN24-60000-P", "deribit", "option", "BTC", "inverse", 1.0, "base", EXP, 60_000.0, "P"),
    (
        "BTC-17JUN24-70000-C",
        "deribit",
        "option",
        "BTC",
        "inverse",
        1.0,
        "base",
        NEAR,
        70_000.0,
        "C",
    ),
]


def _day(date: dt.date, s: float, put_coin: float, with_near: bool) -> LandingData:
    instruments = _f(INSTRUMENTS, INSTR if with_near else INSTR[:2])
    marks = [("BTC-PERPETUAL", s, None, s), ("BTC-28JUN24-60000-P", put_coin, 0.5, s)]
    if with_near:
        marks.append(("BTC-17JUN24-70000-C", 0.001, 0.5, s))
    positions = (
        [
            ("A", "BTC-PERPETUAL", 1_000.0),
            ("A", "BTC-28JUN24-60000-P", -2.0),
            ("A", "BTC-17JUN24-70000-C", -1.0),
        ]
        if with_near
        else []
    )
    return LandingData(
        date,
        instruments,
        _f(MARKS, marks),
        _f(INDEX_PRICES, [("BTC", s)]),
        _f(POSITIONS, positions),
        _f(COLLATERAL, [("A", "BTC", 1.0)]),
        _f(PRICE_HISTORY, [(date, "BTC", s)]),
    )


def test_pnl_and_exceedance() -> None:
    before = _day(D0, 66_000.0, 0.01, True)
    after = _day(D1, 72_000.0, 0.004, False)  # the 17JUN call expired in between
    margin = pl.DataFrame(
        {
            "account_id": ["A", "A"],
            "model": ["portfolio", "standard"],
            "pool_currency": ["USD", "USD"],
            "initial_margin_usd": [1_000.0, 10_000.0],
        }
    )
    result = daily_backtest(
        before.positions, margin, eod.instrument_table(before), eod.instrument_table(after), 1
    )
    perp = 1_000 * 10.0 / 66_000.0 * (72_000.0 - 66_000.0)
    put = -2.0 * (0.004 * 72_000.0 - 0.01 * 66_000.0)
    call = -1.0 * (float(black76.price(72_000.0, 70_000.0, 0.0, 0.0, True)) - 0.001 * 66_000.0)
    expected = perp + put + call
    assert result["pnl_usd"].to_list() == pytest.approx([expected, expected], rel=1e-12)
    assert result["exceedance"].to_list() == [-expected > 1_000.0, -expected > 10_000.0]
    assert result["horizon_days"].to_list() == [1, 1]
