"""Backtest statistics against METHODOLOGY.md section 7 and independent recomputation."""

from __future__ import annotations

import datetime as dt
import itertools
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from scipy.stats import binom, chi2

from risk_core.backtest import stats, summary


@pytest.mark.parametrize(
    ("x", "lr"), [(0, 5.0252), (1, 1.1765), (4, 0.7691), (6, 3.5554), (7, 5.4970)]
)
def test_kupiec_reference_values(x: int, lr: float) -> None:
    assert stats.kupiec_lr(250, x, 0.99) == pytest.approx(lr, abs=5e-5)


def test_kupiec_non_rejection_region() -> None:
    accepted = [x for x in range(15) if stats.kupiec_pvalue(250, x, 0.99) > 0.05]
    assert accepted == [1, 2, 3, 4, 5, 6]


def test_traffic_lights() -> None:
    assert [stats.traffic_light(250, x, 0.99) for x in (0, 4, 5, 9, 10)] == [
        "green",
        "green",
        "yellow",
        "yellow",
        "red",
    ]
    assert stats.zone_boundaries(250, 0.99) == (5, 10)
    assert stats.zone_boundaries(750, 0.995) == (7, 13)


def _independent_lr(seq: list[bool]) -> float:
    """A plain re-derivation with explicit 0 log 0 handling."""
    n = {(a, b): 0 for a in (0, 1) for b in (0, 1)}
    for a, b in itertools.pairwise(seq):
        n[(int(a), int(b))] += 1

    def ll(k: int, p: float) -> float:
        return 0.0 if k == 0 else k * math.log(p)

    tot = sum(n.values())
    pi = (n[(0, 1)] + n[(1, 1)]) / tot
    p01 = n[(0, 1)] / max(n[(0, 0)] + n[(0, 1)], 1)
    p11 = n[(1, 1)] / max(n[(1, 0)] + n[(1, 1)], 1)
    null = ll(n[(0, 0)] + n[(1, 0)], 1 - pi) + ll(n[(0, 1)] + n[(1, 1)], pi)
    alt = ll(n[(0, 0)], 1 - p01) + ll(n[(0, 1)], p01) + ll(n[(1, 0)], 1 - p11) + ll(n[(1, 1)], p11)
    return -2 * (null - alt)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=2, max_size=300))
def test_christoffersen_matches_independent_derivation(seq: list[bool]) -> None:
    t = stats.Transitions.of(seq)
    assert t.n00 + t.n01 + t.n10 + t.n11 == len(seq) - 1
    assert stats.christoffersen_lr(t) == pytest.approx(max(_independent_lr(seq), 0.0), abs=1e-9)
    assert 0.0 <= stats.christoffersen_pvalue(t) <= 1.0


def test_clustered_exceedances_are_rejected() -> None:
    seq = [False] * 240 + [True] * 5 + [False] * 5
    assert stats.christoffersen_pvalue(stats.Transitions.of(seq)) < 0.01
    spread = [i % 50 == 0 for i in range(250)]
    assert stats.christoffersen_pvalue(stats.Transitions.of(spread)) > 0.05


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 2000), frac=st.floats(0, 1), c=st.sampled_from([0.99, 0.995, 0.975]))
def test_kupiec_against_scipy(n: int, frac: float, c: float) -> None:
    x = int(frac * n)
    p = 1 - c
    ph = x / n
    ll0 = binom.logpmf(x, n, p)
    ll1 = binom.logpmf(x, n, ph) if 0 < ph < 1 else 0.0
    assert stats.kupiec_lr(n, x, c) == pytest.approx(max(2 * (ll1 - ll0), 0.0), abs=1e-6)
    assert stats.kupiec_pvalue(n, x, c) == pytest.approx(
        chi2.sf(max(2 * (ll1 - ll0), 0), 1), abs=1e-6
    )


def test_procyclicality_metrics() -> None:
    m = np.array([100.0, 110.0, 90.0, 180.0, 200.0, 150.0])
    assert stats.peak_to_trough(m) == pytest.approx(200 / 90)
    assert stats.max_increase(m, 1) == pytest.approx(1.0)
    assert stats.max_increase(m, 5) == pytest.approx(0.5)
    assert stats.rolling_worst_window(np.array([1, 0, 1, 1, 0, 1], dtype=bool), 3) == 2


def test_conditional_coverage_adds_both_tests() -> None:
    seq = [i in (10, 11, 12, 100) for i in range(250)]
    t = stats.Transitions.of(seq)
    lr = stats.kupiec_lr(250, 4, 0.99) + stats.christoffersen_lr(t)
    assert stats.conditional_coverage_pvalue(250, 4, 0.99, t) == pytest.approx(chi2.sf(lr, 2))
    assert stats.conditional_coverage_pvalue(250, 4, 0.99, t) < stats.kupiec_pvalue(250, 4, 0.99)


@st.composite
def _backtest_rows(draw: st.DrawFn) -> pl.DataFrame:
    """backtest_result rows of a few dates, accounts and models; any account may miss
    any date, exceedances are arbitrary."""
    dates = draw(st.integers(1, 7))
    accounts = draw(st.integers(1, 4))
    models = draw(st.sampled_from([["portfolio"], ["portfolio", "standard"]]))
    cells = [
        (dt.date(2026, 1, 1) + dt.timedelta(days=d), f"A{a}", m)
        for d in range(dates)
        for a in range(accounts)
        for m in models
    ]
    present = draw(st.lists(st.booleans(), min_size=len(cells), max_size=len(cells)))
    hits = draw(st.lists(st.booleans(), min_size=len(cells), max_size=len(cells)))
    rows = [
        (date, account, model, 1, 100.0 + 7.0 * i, -150.0 if hit else 10.0, hit)
        for i, ((date, account, model), keep, hit) in enumerate(
            zip(cells, present, hits, strict=True)
        )
        if keep
    ]
    return pl.DataFrame(
        rows,
        schema={
            "business_date": pl.Date,
            "account_id": pl.String,
            "model": pl.String,
            "horizon_days": pl.Int64,
            "margin_usd": pl.Float64,
            "pnl_usd": pl.Float64,
            "exceedance": pl.Boolean,
        },
        orient="row",
    )


@settings(max_examples=200, deadline=None)
@given(rows=_backtest_rows(), window=st.integers(1, 9), recent_dates=st.integers(0, 2))
def test_summary_from_aggregates_equals_summarize(
    rows: pl.DataFrame, window: int, recent_dates: int
) -> None:
    """Split the history into stored dates (aggregated, as the warehouse returns them)
    and the last ``recent_dates`` dates in memory: the summary is ``summarize``'s."""
    assume(rows.height > 0)
    dates = sorted(set(rows["business_date"].to_list()))
    cut = dates[-recent_dates] if 0 < recent_dates <= len(dates) else None
    recent = rows.filter(pl.col("business_date") >= cut) if cut else rows.clear()
    stored_rows = rows.filter(pl.col("business_date") < cut) if cut else rows
    wanted = summary.stored_dates_needed(recent, window)
    kept = sorted(set(stored_rows["business_date"].to_list()))[-wanted:] if wanted else []
    stored, _ = summary.aggregate(stored_rows.filter(pl.col("business_date").is_in(kept)))
    as_of = dates[-1]
    fast = summary.summarize_window(stored, recent, as_of, 0.99, window)
    slow = summary.summarize(rows, as_of, 0.99, window)
    assert fast.height == slow.height > 0
    assert_frame_equal(fast, slow, check_exact=False, rel_tol=1e-12)
