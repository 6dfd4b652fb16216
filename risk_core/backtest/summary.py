"""backtest_summary rows from backtest_result rows and margin history.

Two ways to the same rows. :func:`summarize` loops over every account's rows of the
window: the slow reference, and what the historical backtest uses. :func:`summarize_window`
takes the window's stored dates already aggregated by the warehouse (per account: its
counts, transition counts and latest exceedance; per date: the total margin) and adds
the day's rows in memory, so that the daily summary over 250 dates never holds the
window's rows (75 million at 100,000 accounts and 3 models) in Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from risk_core.backtest import stats
from risk_core.frames import group_sum


def _summary_row(
    as_of: dt.date,
    model: str,
    dates: Sequence[dt.date],
    n: int,
    x: int,
    transitions: stats.Transitions,
    margin: NDArray[np.float64],
    confidence: float,
) -> dict[str, object]:
    """One backtest_summary row: ``n`` observations with ``x`` exceedances over
    ``dates``, the exceedance transitions and the daily total margin (USD)."""
    return {
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
        # summed in a fixed order (a hash group-by's partial sums vary in the last bits)
        totals = group_sum(mine, ["business_date"], ["margin_usd"], order_by=["account_id"])
        margin = totals["margin_usd"].to_numpy()
        rows.append(_summary_row(as_of, model, dates, n, x, transitions, margin, confidence))
    return pl.DataFrame(rows)


# -- the aggregate path: the stored part of the window arrives aggregated --------------------

#: One row per (model, account_id) with rows in a window: the account's observation and
#: exceedance counts (account-days), the Christoffersen transition counts of its
#: date-ordered exceedance sequence (``n01``: no exceedance, then one), and whether its
#: latest row in the window is an exceedance.
ACCOUNT_SEQUENCES = pl.Schema(
    {
        "model": pl.String(),
        "account_id": pl.String(),
        "observations": pl.Int64(),
        "exceedances": pl.Int64(),
        "n00": pl.Int64(),
        "n01": pl.Int64(),
        "n10": pl.Int64(),
        "n11": pl.Int64(),
        "last_exceedance": pl.Boolean(),
    }
)
#: One row per (business_date, model): margin_usd and pnl_usd summed over accounts (USD).
DAILY_TOTALS = pl.Schema(
    {
        "business_date": pl.Date(),
        "model": pl.String(),
        "margin_usd": pl.Float64(),
        "pnl_usd": pl.Float64(),
    }
)
_COUNTS = ["observations", "exceedances", "n00", "n01", "n10", "n11"]


@dataclass(frozen=True)
class WindowAggregates:
    """backtest_result rows of some business dates, aggregated: the warehouse computes
    them for the stored dates of a window, :func:`aggregate` for rows in memory."""

    dates: tuple[dt.date, ...]  #: the business dates covered, ascending
    accounts: pl.DataFrame  #: :data:`ACCOUNT_SEQUENCES`
    daily: pl.DataFrame  #: :data:`DAILY_TOTALS`

    @classmethod
    def empty(cls) -> WindowAggregates:
        return cls((), pl.DataFrame(schema=ACCOUNT_SEQUENCES), pl.DataFrame(schema=DAILY_TOTALS))


def _transitions(previous: pl.Expr, current: pl.Expr) -> list[pl.Expr]:
    """n00, n01, n10, n11 summed over (previous, current) exceedance pairs; a pair with a
    null ``previous`` (an account's first row) counts in none of them."""
    return [
        (~previous & ~current).sum().cast(pl.Int64).alias("n00"),
        (~previous & current).sum().cast(pl.Int64).alias("n01"),
        (previous & ~current).sum().cast(pl.Int64).alias("n10"),
        (previous & current).sum().cast(pl.Int64).alias("n11"),
    ]


def _ordered(results: pl.DataFrame) -> pl.DataFrame:
    """Rows in each account's sequence order (model, account, business_date, horizon,
    as the warehouse orders them); a null exceedance counts as none."""
    return results.select(
        "business_date",
        "model",
        "account_id",
        "horizon_days",
        "margin_usd",
        "pnl_usd",
        pl.col("exceedance").fill_null(False),
    ).sort("model", "account_id", "business_date", "horizon_days")


def _daily_totals(ordered: pl.DataFrame) -> pl.DataFrame:
    totals = group_sum(
        ordered,
        ["business_date", "model"],
        ["margin_usd", "pnl_usd"],
        ["account_id", "horizon_days"],
    )
    return totals.cast(DAILY_TOTALS)


def aggregate(results: pl.DataFrame) -> tuple[WindowAggregates, pl.DataFrame]:
    """Aggregates of backtest_result rows in memory (a day's rows: 300,000 for 100,000
    accounts and 3 models), and each account's first exceedance flag per model
    (``model, account_id, first_exceedance``) to chain its sequence onto earlier dates."""
    ordered = _ordered(results)
    previous = pl.col("exceedance").shift(1).over("model", "account_id")
    accounts = (
        ordered.with_columns(previous.alias("previous"))
        .group_by("model", "account_id", maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("observations"),
            pl.col("exceedance").sum().cast(pl.Int64).alias("exceedances"),
            *_transitions(pl.col("previous"), pl.col("exceedance")),
            pl.col("exceedance").last().alias("last_exceedance"),
            pl.col("exceedance").first().alias("first_exceedance"),
        )
    )
    window = WindowAggregates(
        tuple(sorted(set(ordered["business_date"].to_list()))),
        accounts.select(ACCOUNT_SEQUENCES.names()).cast(ACCOUNT_SEQUENCES),
        _daily_totals(ordered),
    )
    return window, accounts.select("model", "account_id", "first_exceedance")


def stored_dates_needed(recent: pl.DataFrame, window_days: int) -> int:
    """How many stored business dates complete a window of ``window_days`` dates that
    ends with the dates of ``recent`` (backtest_result rows in memory)."""
    return max(window_days - recent["business_date"].n_unique(), 0)


def window_daily_totals(stored: WindowAggregates, recent: pl.DataFrame) -> pl.DataFrame:
    """:data:`DAILY_TOTALS` over the window (the stored dates, then those of ``recent``),
    sorted by model then business_date."""
    return pl.concat([stored.daily, _daily_totals(_ordered(recent))]).sort("model", "business_date")


def summarize_window(
    stored: WindowAggregates,
    recent: pl.DataFrame,
    as_of: dt.date,
    confidence: float,
    window_days: int = 250,
) -> pl.DataFrame:
    """:func:`summarize` of a window whose stored dates arrive aggregated.

    ``stored``: aggregates of the window's stored dates, all before the dates of
    ``recent`` and at most ``window_days`` minus their number
    (:func:`stored_dates_needed`); ``recent``: backtest_result rows in memory (today's).
    The result has :func:`summarize`'s columns and values: observations (account-days)
    and exceedances add up; each account's transition counts are those of its stored
    part, of its recent part and of the step from its latest stored row to its first
    recent one; procyclicality is measured on the daily total margin per model (USD).
    """
    recent_dates = sorted(set(recent["business_date"].to_list()))[-window_days:]
    recent = recent.filter(pl.col("business_date").is_in(recent_dates))
    if stored.dates and recent_dates and stored.dates[-1] >= recent_dates[0]:
        raise ValueError(
            f"stored dates reach {stored.dates[-1]}, recent rows start on {recent_dates[0]}"
        )
    if len(stored.dates) + len(recent_dates) > window_days:
        raise ValueError(
            f"{len(stored.dates)} stored and {len(recent_dates)} recent dates exceed the "
            f"window of {window_days} dates"
        )
    dates = [*stored.dates, *recent_dates]
    if not dates:
        return pl.DataFrame()
    fresh, first = aggregate(recent)
    steps = (
        first.join(
            stored.accounts.select("model", "account_id", "last_exceedance"),
            on=["model", "account_id"],
            how="inner",
        )
        .group_by("model")
        .agg(*_transitions(pl.col("last_exceedance"), pl.col("first_exceedance")))
        .with_columns(
            pl.lit(0, pl.Int64).alias("observations"), pl.lit(0, pl.Int64).alias("exceedances")
        )
    )
    counts = (
        pl.concat([f.select("model", *_COUNTS) for f in (stored.accounts, fresh.accounts, steps)])
        .group_by("model")
        .agg(pl.col(_COUNTS).sum())
        .sort("model")
    )
    daily = pl.concat([stored.daily, fresh.daily]).sort("model", "business_date")
    rows = []
    for row in counts.iter_rows(named=True):
        n, x = int(row["observations"]), int(row["exceedances"])
        transitions = stats.Transitions(row["n00"], row["n01"], row["n10"], row["n11"])
        margin = daily.filter(pl.col("model") == row["model"])["margin_usd"].to_numpy()
        rows.append(_summary_row(as_of, row["model"], dates, n, x, transitions, margin, confidence))
    return pl.DataFrame(rows)
