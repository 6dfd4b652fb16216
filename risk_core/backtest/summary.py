"""backtest_summary rows from backtest_result rows and margin history."""

from __future__ import annotations

import datetime as dt

import polars as pl

from risk_core.backtest import stats


def summarize(
    results: pl.DataFrame,
    as_of: dt.date,
    confidence: float,
    window_days: int = 250,
) -> pl.DataFrame:
    """One row per model over the last ``window_days`` business dates of ``results``
    (backtest_result columns, several dates). Observations are account-days; the
    independence test sums the transition counts of every account's sequence;
    procyclicality is measured on the daily total margin of the model."""
    rows = []
    dates = sorted(set(results["business_date"].to_list()))[-window_days:]
    if not dates:
        return pl.DataFrame()
    window = results.filter(pl.col("business_date").is_in(dates))
    for model in sorted(set(window["model"].to_list())):
        mine = window.filter(pl.col("model") == model).sort("account_id", "business_date")
        n = mine.height
        x = int(mine["exceedance"].sum())
        transitions = stats.Transitions(0, 0, 0, 0)
        for _, group in mine.group_by("account_id", maintain_order=True):
            transitions = transitions + stats.Transitions.of(group["exceedance"].to_numpy())
        totals = (
            mine.group_by("business_date").agg(pl.col("margin_usd").sum()).sort("business_date")
        )
        margin = totals["margin_usd"].to_numpy()
        rows.append(
            {
                "as_of_date": as_of,
                "model": model,
                "window_start": dates[0],
                "window_end": dates[-1],
                "observations": n,
                "exceedances": x,
                "expected_exceedances": n * (1.0 - confidence),
                "confidence": confidence,
                "kupiec_pvalue": stats.kupiec_pvalue(n, x, confidence),
                "christoffersen_pvalue": stats.christoffersen_pvalue(transitions),
                "traffic_light": stats.traffic_light(n, x, confidence),
                "peak_to_trough": stats.peak_to_trough(margin),
                "max_increase_5d": stats.max_increase(margin, 5),
                "max_increase_30d": stats.max_increase(margin, 30),
            }
        )
    return pl.DataFrame(rows)
