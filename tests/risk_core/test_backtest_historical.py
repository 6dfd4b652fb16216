"""Historical backtest on real prices: runs through a crash, and never looks ahead."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from risk_core.backtest import historical
from risk_core.ruleset import load_ruleset


@pytest.fixture(scope="module")
def history(shared_data: Path) -> pl.DataFrame:
    return historical.load_history(
        [shared_data / "prices" / "BTC-USD.csv", shared_data / "prices" / "ETH-USD.csv"]
    )


def test_march_2020_crash_is_where_risk_models_are_exceeded(history: pl.DataFrame) -> None:
    rules = load_ruleset("cross-margin")
    results = historical.run_backtest(history, rules, dt.date(2020, 3, 9), dt.date(2020, 3, 15))
    assert set(results["model"]) == {"portfolio", "standard", "hs_es"}
    books = set(results["account_id"])
    assert {"BTC:short_straddle", "ETH:covered_call", "BTC_ETH:cross"} <= books
    crash = results.filter(pl.col("business_date") == dt.date(2020, 3, 12))
    # The book of 12 March held into the -39 % day: the long perpetual loses about 39 %.
    long_perp = crash.filter(pl.col("account_id") == "BTC:long_perp")["pnl_usd"][0]
    assert long_perp == pytest.approx(4_830.0 - 7_937.0, rel=0.02)
    hits = results.filter(pl.col("exceedance") & (pl.col("model") != "standard"))
    assert hits.height > 0
    # Risk models are exceeded only by the crash and the rebound that followed it.
    assert dt.date(2020, 3, 12) in set(hits["business_date"])
    assert set(hits["business_date"]) <= {dt.date(2020, 3, 12), dt.date(2020, 3, 13)}
    assert (results["margin_usd"] >= 0).all()


def test_no_look_ahead(history: pl.DataFrame) -> None:
    rules = load_ruleset("cross-margin")
    day = dt.date(2021, 5, 10)
    base = historical.run_backtest(history, rules, day, day)
    # Change every price after D + 1 (the P&L date): the margin of D must not move.
    shocked = history.with_columns(
        pl.when(pl.col("date") > day + dt.timedelta(days=1))
        .then(pl.col("close") * 3.0)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    again = historical.run_backtest(shocked, rules, day, day)
    assert base.equals(again)


def test_calibration_meets_target_and_never_overwrites(
    history: pl.DataFrame, tmp_path: Path
) -> None:
    from risk_core.backtest.calibrate import calibrate, write_proposed
    from risk_core.ruleset import load_ruleset as load

    rules = load("cross-margin")
    crash = calibrate(
        history, rules, "portfolio", dt.date(2020, 3, 5), dt.date(2020, 3, 20), 0.999, steps=1
    )[0]
    assert not crash.met and crash.value == 2.0  # honest when the widest range misses
    start, end = dt.date(2020, 6, 1), dt.date(2020, 6, 30)
    result, proposed = calibrate(history, rules, "portfolio", start, end, 0.99, steps=3)
    assert result.met and result.coverage >= 0.99 and 0.25 <= result.value <= 2.0
    assert proposed["price_range"] == pytest.approx(0.16 * result.value)
    path = write_proposed(rules, "portfolio", proposed, tmp_path / "p.toml", result)
    again = load(path)
    assert again.models["portfolio"]["price_range"] == pytest.approx(proposed["price_range"])
    assert again.models["portfolio"]["offsets"] == rules.models["portfolio"]["offsets"]
    with pytest.raises(FileExistsError):
        write_proposed(rules, "portfolio", proposed, path, result)
