"""Soak: 30 consecutive business dates generated and run into one warehouse, then every
invariant re-checked over the whole warehouse: each date whole and published once,
nothing dropped, components and contributions adding up, Greeks summing, no duplicated
key, a daily backtest for every date after the first."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from risk_core import outputs
from risk_core.landing.generator import generate_landing
from risk_core.landing.reader import read_landing
from tests.support import published

pytestmark = [pytest.mark.integration, pytest.mark.slow]
START = dt.date(2026, 10, 1)
DAYS = 30


def _close(a: pl.Series | np.ndarray, b: pl.Series | np.ndarray) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bool(np.all(np.abs(a - b) <= 1e-9 * (1.0 + np.abs(b))))


def test_thirty_business_dates(tmp_path: Path) -> None:
    from pipelines.runner import run_business_date
    from pipelines.warehouse import Warehouse

    landing = tmp_path / "landing"
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    dates = [START + dt.timedelta(days=i) for i in range(DAYS)]
    for date in dates:
        generate_landing(landing, date, accounts=16, positions=160, seed=30)
        outcome = run_business_date(
            date, landing_dir=str(landing), warehouse_url=url, artefacts_dir=str(tmp_path / "a")
        )
        assert outcome.success, (date, outcome.errors)

    wh = Warehouse(url)
    everything = {t.name: wh.read_table(t.name) for t in outputs.ALL_TABLES}
    for table in outputs.ALL_TABLES:
        frame = everything[table.name]
        assert not frame.select(table.key).is_duplicated().any(), f"{table.name}: duplicates"
    runs = everything["pipeline_run"]
    assert runs.group_by("business_date").len()["len"].to_list() == [1] * DAYS
    assert set(runs["status"]) == {"success"}

    for i, date in enumerate(dates):
        run_id, rows = published(url, date)  # whole: one run's rows in every table
        assert run_id is not None
        data = read_landing(landing, date)
        risk = rows["position_risk"]
        # every landing position is published, none added
        assert (
            risk.select("account_id", "instrument_id")
            .sort("account_id", "instrument_id")
            .equals(
                data.positions.select("account_id", "instrument_id").sort(
                    "account_id", "instrument_id"
                )
            )
        ), f"{date}: position_risk does not hold exactly the landing positions"
        account = rows["margin_account"]
        books = set(data.positions["account_id"]) | set(data.collateral["account_id"])
        for model in ("portfolio", "standard", "hs_es"):
            assert set(account.filter(pl.col("model") == model)["account_id"]) == books
        # components add up to each row's initial margin
        comp = (
            rows["margin_component"]
            .group_by("account_id", "model", "pool_currency")
            .agg(pl.col("amount").sum())
        )
        joined = account.join(comp, on=["account_id", "model", "pool_currency"], how="left")
        assert _close(joined["amount"].fill_null(0.0), joined["initial_margin"]), date
        # contributions add up to each account's portfolio margin (USD)
        contrib = risk.group_by("account_id").agg(pl.col("margin_contribution_usd").sum())
        portfolio = (
            account.filter(pl.col("model") == "portfolio")
            .group_by("account_id")
            .agg(pl.col("initial_margin_usd").sum())
            .join(contrib, on="account_id", how="left")
        )
        assert _close(
            portfolio["margin_contribution_usd"].fill_null(0.0), portfolio["initial_margin_usd"]
        ), date
        # margin call and excess as CONTRACT.md defines them
        assert (
            account["margin_call"] == (account["equity_usd"] < account["maintenance_margin_usd"])
        ).all()
        assert _close(account["excess_usd"], account["equity_usd"] - account["initial_margin_usd"])
        # greeks_account = sums of position_risk
        sums = risk.group_by("account_id", "underlying").agg(
            pl.col("delta", "delta_usd", "gamma", "vega_usd", "theta_usd").sum()
        )
        greeks = rows["greeks_account"].join(sums, on=["account_id", "underlying"], how="full")
        for c in ("delta", "delta_usd", "gamma", "vega_usd", "theta_usd"):
            assert _close(greeks[c], greeks[f"{c}_right"]), (date, c)
        # the backtest of the day before: one row per account and model of D - 1
        tested = rows["backtest_result"]
        if i == 0:
            assert tested.is_empty()
        else:
            _, previous = published(url, dates[i - 1])
            expected = previous["margin_account"].select("account_id", "model").unique()
            assert (
                tested.select("account_id", "model")
                .sort("account_id", "model")
                .equals(expected.sort("account_id", "model"))
            ), date
            assert rows["backtest_summary"].height > 0
        assert (
            rows["data_quality"]["success"].all()
            or rows["data_quality"].filter(~pl.col("success"))["severity"].eq("warning").all()
        )
