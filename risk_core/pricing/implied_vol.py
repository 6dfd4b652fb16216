"""Vectorized Black-76 implied volatility (r = 0) by safeguarded Newton on the price.

Every arbitrage-free price (strictly between intrinsic and the upper bound: the forward
for a call, the strike for a put) has one volatility; the solver keeps a bracket
``[lo, hi]`` around it and takes Newton steps in volatility, falling back to bisection
whenever a step leaves the bracket, so it converges for deep out-of-the-money and very
short options alike. Prices outside the bounds are reported with a status, never
turned into a number silently.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from risk_core.pricing import black76

OK, BELOW_INTRINSIC, ABOVE_UPPER_BOUND, EXPIRED, INVALID_INPUT = 0, 1, 2, 3, 4
STATUS_NAMES = {
    OK: "ok",
    BELOW_INTRINSIC: "price at or below intrinsic value",
    ABOVE_UPPER_BOUND: "price at or above the no-arbitrage upper bound",
    EXPIRED: "expired: no time value to imply a volatility from",
    INVALID_INPUT: "non-finite or non-positive input",
}
MAX_VOL = 20.0
PRICE_TOLERANCE = 1e-10
MAX_ITERATIONS = 100


class ImpliedVolResult(NamedTuple):
    vol: NDArray[np.float64]  #: decimal volatility; 0 where status != OK
    status: NDArray[np.int8]

    @property
    def ok(self) -> NDArray[np.bool_]:
        return np.asarray(self.status == OK, dtype=np.bool_)


def implied_vol(
    price: ArrayLike, forward: ArrayLike, strike: ArrayLike, t: ArrayLike, is_call: ArrayLike
) -> ImpliedVolResult:
    """Implied volatility of undiscounted Black-76 prices per unit of underlying (USD)."""
    p, f, k, tt, c = (
        np.array(a, dtype=dtype)
        for a, dtype in zip(
            np.broadcast_arrays(price, forward, strike, t, is_call),
            (np.float64, np.float64, np.float64, np.float64, bool),
            strict=True,
        )
    )
    shape = p.shape
    p, f, k, tt, c = (a.ravel() for a in (p, f, k, tt, c))
    status = np.full(p.shape, OK, dtype=np.int8)
    finite = np.isfinite(p) & np.isfinite(f) & np.isfinite(k) & np.isfinite(tt)
    status[~finite | (f <= 0) | (k <= 0) | (p < 0)] = INVALID_INPUT
    status[(status == OK) & (tt <= 0)] = EXPIRED
    intrinsic = np.maximum(np.where(c, f - k, k - f), 0.0)
    upper = np.where(c, f, k)
    scale = np.maximum(f, k)
    tol = np.full(p.shape, PRICE_TOLERANCE)
    status[(status == OK) & (p <= intrinsic + 1e-14 * scale)] = BELOW_INTRINSIC
    status[(status == OK) & (p >= upper - 1e-14 * scale)] = ABOVE_UPPER_BOUND

    vol = np.zeros(p.shape)
    idx = np.flatnonzero(status == OK)
    if idx.size:
        vol[idx] = _solve(p[idx], f[idx], k[idx], tt[idx], c[idx], tol[idx])
    return ImpliedVolResult(vol.reshape(shape), status.reshape(shape))


def _solve(
    p: NDArray[np.float64],
    f: NDArray[np.float64],
    k: NDArray[np.float64],
    t: NDArray[np.float64],
    c: NDArray[np.bool_],
    tol: NDArray[np.float64],
) -> NDArray[np.float64]:
    lo = np.zeros(p.shape)
    hi = np.full(p.shape, MAX_VOL)
    # Brenner-Subrahmanyam start, clipped into the bracket.
    sigma = np.clip(np.sqrt(2.0 * np.pi / t) * p / f, 0.05, 5.0)
    active = np.ones(p.shape, dtype=bool)
    for _ in range(MAX_ITERATIONS):
        g = black76.greeks(f[active], k[active], t[active], sigma[active], c[active])
        diff = g.price - p[active]
        done = np.abs(diff) <= tol[active]
        too_high = diff > 0
        a = np.flatnonzero(active)
        hi[a] = np.where(too_high, np.minimum(hi[a], sigma[a]), hi[a])
        lo[a] = np.where(~too_high, np.maximum(lo[a], sigma[a]), lo[a])
        vega = g.vega * 100.0  # per unit volatility
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            step = np.where(vega > 0, diff / vega, np.inf)
        newton = sigma[a] - step
        inside = np.isfinite(newton) & (newton > lo[a]) & (newton < hi[a])
        sigma[a] = np.where(done, sigma[a], np.where(inside, newton, 0.5 * (lo[a] + hi[a])))
        narrow = (hi[a] - lo[a]) <= 1e-15 * np.maximum(hi[a], 1.0)
        active[a[done | narrow]] = False
        if not active.any():
            break
    return sigma
