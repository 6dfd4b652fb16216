"""Historical-simulation ES: properties, no look-ahead, real stress history."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from risk_core import eod
from risk_core.landing.generator import generate_landing
from risk_core.landing.reader import LandingData, read_landing
from risk_core.margin import hs_es
from risk_core.ruleset import load_ruleset

DATE = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> LandingData:
    folder = tmp_path_factory.mktemp("hs")
    generate_landing(folder, DATE, accounts=40, positions=400, seed=8)
    return read_landing(folder, DATE)


def _params(**over: float) -> dict[str, object]:
    return {**load_ruleset("cross-margin").models["hs_es"], **over}


def _im(data: LandingData, **over: float) -> np.ndarray:
    inputs = eod.margin_inputs(data, eod.instrument_table(data))
    return hs_es.compute(inputs, _params(**over)).accounts["initial_margin"].to_numpy()


def test_monotone_in_confidence_and_es_above_var(data: LandingData) -> None:
    low, high = (
        _im(data, confidence=0.975, stress_weight=0.0),
        _im(data, confidence=0.995, stress_weight=0.0),
    )
    assert np.all(high >= low - 1e-9)
    inputs = eod.margin_inputs(data, eod.instrument_table(data))
    recent, _ = hs_es._scenarios(inputs, _params())
    from risk_core.scenarios import revalue_usd

    loss = -inputs.positions.account_pnl(revalue_usd(inputs.table, recent))
    es, _ = hs_es._tail(loss, int(np.ceil(0.01 * recent.n)))
    var = np.quantile(loss, 0.99, axis=1, method="higher")
    assert np.all(es >= var - 1e-9)


def test_positive_homogeneity(data: LandingData) -> None:
    doubled = LandingData(
        DATE,
        data.instruments,
        data.marks,
        data.index_prices,
        data.positions.with_columns(pl.col("quantity") * 3.0),
        data.collateral,
        data.price_history,
    )
    np.testing.assert_allclose(_im(doubled), 3.0 * _im(data), rtol=1e-9, atol=1e-6)


def test_no_look_ahead(data: LandingData) -> None:
    later = pl.DataFrame(
        {
            "date": [DATE + dt.timedelta(days=1)] * 3,
            "underlying": ["BTC", "ETH", "SOL"],
            "close": [1.0, 1.0, 1.0],
        }
    )
    with_future = pl.concat([data.price_history, later])
    a = eod.margin_inputs(data, eod.instrument_table(data))
    b_data = LandingData(
        DATE,
        data.instruments,
        data.marks,
        data.index_prices,
        data.positions,
        data.collateral,
        with_future,
    )
    b = eod.margin_inputs(b_data, eod.instrument_table(b_data))
    ra, rb = hs_es.compute(a, _params()), hs_es.compute(b, _params())
    assert ra.accounts.equals(rb.accounts)


def test_real_history_stress_window_covers_march_2020(shared_data: Path) -> None:
    btc = pl.read_csv(shared_data / "prices" / "BTC-USD.csv").select(
        pl.col("date").str.to_date(),
        pl.lit("BTC").alias("underlying"),
        pl.col("value").alias("close"),
    )
    history = btc.filter(pl.col("date").is_between(dt.date(2018, 6, 1), dt.date(2020, 12, 31)))
    dates, r = hs_es.joint_returns(history, ("BTC",), _params())
    crash = dates.index(dt.date(2020, 3, 13))
    assert r[crash, 0] < -0.4  # 7,937 -> 4,830 as stored
    vol = hs_es.ewma_vol(r, 0.97)
    window = 250
    level = np.convolve(vol[:-1, 0], np.ones(window) / window, mode="valid")
    start = int(np.argmax(level))
    assert start <= crash < start + window  # the stressed window holds the crash
