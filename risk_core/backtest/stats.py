"""Backtest statistics (METHODOLOGY.md section 7).

* Kupiec proportion-of-failures likelihood ratio (chi-squared, 1 dof);
* Christoffersen independence LR from the transition counts of the exceedance sequence
  (chi-squared, 1 dof), and conditional coverage = Kupiec + independence (2 dof);
* Basel traffic light from the binomial distribution: green while P(X <= x) < 95 %, red
  once P(X <= x) >= 99.99 % (250 observations at 99 %: green 0-4, yellow 5-9, red >= 10);
* procyclicality: peak-to-trough ratio of margin, largest n-day relative increase.

``0 * log 0`` is taken as 0 everywhere (``scipy.special.xlogy``), so zero cells are safe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import xlogy
from scipy.stats import binom, chi2


def kupiec_lr(n: int, x: int, confidence: float) -> float:
    """Kupiec POF LR for ``x`` exceedances in ``n`` observations at ``confidence``."""
    p = 1.0 - confidence
    if n <= 0:
        return 0.0
    phat = x / n
    null = xlogy(n - x, 1.0 - p) + xlogy(x, p)
    alt = xlogy(n - x, 1.0 - phat) + xlogy(x, phat)
    return float(max(-2.0 * (null - alt), 0.0))


def kupiec_pvalue(n: int, x: int, confidence: float) -> float:
    return float(chi2.sf(kupiec_lr(n, x, confidence), 1))


@dataclass(frozen=True)
class Transitions:
    n00: int
    n01: int
    n10: int
    n11: int

    @classmethod
    def of(cls, exceedances: ArrayLike) -> Transitions:
        e = np.asarray(exceedances, dtype=bool)
        prev, cur = e[:-1], e[1:]
        return cls(
            int(np.sum(~prev & ~cur)),
            int(np.sum(~prev & cur)),
            int(np.sum(prev & ~cur)),
            int(np.sum(prev & cur)),
        )

    def __add__(self, other: Transitions) -> Transitions:
        return Transitions(
            self.n00 + other.n00, self.n01 + other.n01, self.n10 + other.n10, self.n11 + other.n11
        )


def christoffersen_lr(t: Transitions) -> float:
    """Independence LR: first-order Markov against independent exceedances."""
    total = t.n00 + t.n01 + t.n10 + t.n11
    if total == 0:
        return 0.0
    pi = (t.n01 + t.n11) / total
    pi01 = t.n01 / (t.n00 + t.n01) if t.n00 + t.n01 else 0.0
    pi11 = t.n11 / (t.n10 + t.n11) if t.n10 + t.n11 else 0.0
    null = xlogy(t.n00 + t.n10, 1.0 - pi) + xlogy(t.n01 + t.n11, pi)
    alt = (
        xlogy(t.n00, 1.0 - pi01)
        + xlogy(t.n01, pi01)
        + xlogy(t.n10, 1.0 - pi11)
        + xlogy(t.n11, pi11)
    )
    return float(max(-2.0 * (null - alt), 0.0))


def christoffersen_pvalue(t: Transitions) -> float:
    return float(chi2.sf(christoffersen_lr(t), 1))


def conditional_coverage_pvalue(n: int, x: int, confidence: float, t: Transitions) -> float:
    return float(chi2.sf(kupiec_lr(n, x, confidence) + christoffersen_lr(t), 2))


def traffic_light(n: int, x: int, confidence: float) -> str:
    """Basel zone of ``x`` exceedances in ``n`` observations at ``confidence``."""
    cdf = float(binom.cdf(x, n, 1.0 - confidence))
    if cdf < 0.95:
        return "green"
    if cdf < 0.9999:
        return "yellow"
    return "red"


def zone_boundaries(n: int, confidence: float) -> tuple[int, int]:
    """(first yellow, first red) exceedance counts."""
    x = np.arange(n + 1)
    cdf = binom.cdf(x, n, 1.0 - confidence)
    return int(np.argmax(cdf >= 0.95)), int(np.argmax(cdf >= 0.9999))


def peak_to_trough(margin: ArrayLike) -> float:
    """Largest margin over the smallest positive margin of the window (1 if flat)."""
    m = np.asarray(margin, dtype=np.float64)
    positive = m[m > 0]
    return float(positive.max() / positive.min()) if positive.size else 1.0


def max_increase(margin: ArrayLike, days: int) -> float:
    """Largest relative increase of margin over ``days`` observations (0 if none)."""
    m = np.asarray(margin, dtype=np.float64)
    if m.size <= days:
        return 0.0
    before, after = m[:-days], m[days:]
    ok = before > 0
    return float(np.max(after[ok] / before[ok] - 1.0, initial=0.0))


def rolling_worst_window(exceedances: NDArray[np.bool_], window: int) -> int:
    """Most exceedances in any ``window`` consecutive observations."""
    e = np.asarray(exceedances, dtype=np.int64)
    if e.size <= window:
        return int(e.sum())
    c = np.concatenate([[0], np.cumsum(e)])
    return int(np.max(c[window:] - c[:-window]))
