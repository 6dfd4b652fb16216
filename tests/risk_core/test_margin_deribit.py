"""Deribit segregated portfolio margin: the published conformance example and properties."""

from __future__ import annotations

import datetime as dt

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
from risk_core.margin.deribit import compute
from risk_core.ruleset import load_ruleset

DATE = dt.date(2024, 6, 17)
EXPIRY = dt.datetime(2024, 6, 28, 8, tzinfo=dt.UTC)


def _frame(dataset, rows):  # type: ignore[no-untyped-def]
    return pl.DataFrame(rows, schema=dataset.schema, orient="row")


def _landing(
    positions: list[tuple[str, str, float]],
    perp: float = 66_500.0,
    extra_instruments=(),
    extra_marks=(),
) -> LandingData:  # type: ignore[no-untyped-def]
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
            *extra_instruments,
        ],
    )
    marks = _frame(
        MARKS,
        [
            ("BTC-PERPETUAL", perp, None, perp),
            ("BTC-28JUN24", perp * 1.002, None, perp * 1.002),
            *extra_marks,
        ],
    )
    return LandingData(
        DATE,
        instruments,
        marks,
        _frame(INDEX_PRICES, [("BTC", perp)]),
        _frame(POSITIONS, positions),
        _frame(COLLATERAL, [("A", "BTC", 1.0)]),
        _frame(PRICE_HISTORY, [(DATE, "BTC", perp)]),
    )


def _margin(data: LandingData):  # type: ignore[no-untyped-def]
    inputs = eod.margin_inputs(data, eod.instrument_table(data))
    params = load_ruleset("deribit-spm").models["portfolio"]
    return compute(inputs, params)


@pytest.mark.parametrize("perp", [66_500.0, 20_000.0])
def test_published_conformance_example(perp: float) -> None:
    # +0.314538364 BTC of BTC-PERPETUAL and -0.001187534 BTC of BTC-28JUN24 (base sizes):
    # in 10-USD contracts at the marks. The result must not depend on the mark level.
    fut = perp * 1.002
    data = _landing(
        [
            ("A", "BTC-PERPETUAL", 0.314538364 * perp / 10.0),
            ("A", "BTC-28JUN24", -0.001187534 * fut / 10.0),
        ],
        perp=perp,
    )
    result = _margin(data)
    comp = dict(
        result.components.filter(pl.col("pool_currency") == "BTC")
        .select("component", "amount")
        .iter_rows()
    )
    assert comp["worst_scenario_loss"] == pytest.approx(0.05968587238, abs=1e-9)
    assert comp["roll_shock"] == pytest.approx(0.00315725898, abs=1e-9)
    assert comp["delta_shock"] == 0.0 and comp["extended_table_loss"] == 0.0
    account = result.accounts.filter(pl.col("pool_currency") == "BTC").row(0, named=True)
    assert account["initial_margin"] == pytest.approx(0.06284313098, abs=1e-9)
    assert account["maintenance_margin"] == pytest.approx(0.050274504784, abs=1e-9)
    assert result.contributions["amount"].sum() == pytest.approx(
        account["initial_margin"], rel=1e-12
    )


def test_far_otm_short_put_is_charged_by_the_extended_table() -> None:
    put = (
        "BTC-28JUN24-20000-P",
        "deribit",
        "option",
        "BTC",
        "inverse",
        1.0,
        "base",
        EXPIRY,
        20_000.0,
        "P",
    )
    data = _landing(
        [("A", "BTC-28JUN24-20000-P", -100.0)],
        extra_instruments=[put],
        extra_marks=[("BTC-28JUN24-20000-P", 1e-6, 0.6, 66_633.0)],
    )
    comp = dict(_margin(data).components.select("component", "amount").iter_rows())
    assert comp["extended_table_loss"] > 0


def test_zero_and_monotone_in_size() -> None:
    sizes = [0.0, 1.0, 2.0, 5.0]
    ims = []
    for n in sizes:
        positions = [("A", "BTC-PERPETUAL", 1000.0 * n)] if n else []
        r = _margin(_landing(positions))
        ims.append(float(r.accounts["initial_margin"].sum()))
    assert ims[0] == 0.0
    assert ims == sorted(ims) and ims[1] > 0
