"""Black-76 prices and Greeks on a forward with r = 0, vectorized.

All functions take NumPy arrays (or scalars) that broadcast together and return
float64 arrays. Values are per one unit of underlying, in the currency of the forward
(USD). Units of the Greeks are those of :mod:`risk_core.conventions`: vega per
volatility point, theta per calendar day.

Edge cases are explicit:

* ``T <= 0`` (at or after expiry): the price is the intrinsic value, delta is the
  exercise indicator (0.5 exactly at the money), gamma, vega and theta are 0.
* ``sigma == 0``: the same as expiry (the forward is certain).
* Extreme ``sigma * sqrt(T)`` (above :data:`MAX_TOTAL_STDEV`) is clipped so that no
  NaN or inf can leave the module; the price then sits at its upper bound.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

from risk_core.conventions import DAYS_PER_YEAR, VOL_POINT

#: Total standard deviations beyond which ``N(d)`` is 0 or 1 to double precision.
MAX_TOTAL_STDEV = 40.0
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)

FloatArray = NDArray[np.float64]


class Greeks(NamedTuple):
    """Black-76 price and unit Greeks, each an array of the broadcast shape."""

    price: FloatArray
    delta: FloatArray
    gamma: FloatArray
    vega: FloatArray  #: per +0.01 volatility
    theta: FloatArray  #: per calendar day


def _prepare(
    forward: ArrayLike, strike: ArrayLike, t: ArrayLike, sigma: ArrayLike, is_call: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, NDArray[np.bool_]]:
    f, k, tt, s, c = np.broadcast_arrays(
        np.asarray(forward, dtype=np.float64),
        np.asarray(strike, dtype=np.float64),
        np.asarray(t, dtype=np.float64),
        np.asarray(sigma, dtype=np.float64),
        np.asarray(is_call, dtype=bool),
    )
    return f, k, tt, s, c


def price(
    forward: ArrayLike, strike: ArrayLike, t: ArrayLike, sigma: ArrayLike, is_call: ArrayLike
) -> FloatArray:
    """Undiscounted Black-76 price of a European call or put, per unit of underlying."""
    return greeks(forward, strike, t, sigma, is_call).price


def greeks(
    forward: ArrayLike, strike: ArrayLike, t: ArrayLike, sigma: ArrayLike, is_call: ArrayLike
) -> Greeks:
    """Black-76 price, delta, gamma, vega (per vol point) and theta (per calendar day)."""
    f, k, tt, s, c = _prepare(forward, strike, t, sigma, is_call)
    sign = np.where(c, 1.0, -1.0)
    live = (tt > 0.0) & (s > 0.0)
    sqrt_t = np.sqrt(np.where(live, tt, 1.0))
    stdev = np.minimum(np.where(live, s, 1.0) * sqrt_t, MAX_TOTAL_STDEV)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_moneyness = np.log(f / k)
    d1 = log_moneyness / stdev + 0.5 * stdev
    d2 = d1 - stdev
    nd1 = ndtr(sign * d1)
    nd2 = ndtr(sign * d2)
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)

    intrinsic = np.maximum(sign * (f - k), 0.0)
    exercise = np.where(f == k, 0.5, (sign * (f - k) > 0.0).astype(np.float64))

    live_price = sign * (f * nd1 - k * nd2)
    # Cancellation can leave a live price a few ulps below intrinsic; never below.
    value = np.where(live, np.maximum(live_price, intrinsic), intrinsic)
    delta = np.where(live, sign * nd1, sign * exercise)
    gamma = np.where(live, pdf / (f * stdev), 0.0)
    vega_per_unit_vol = np.where(live, f * pdf * sqrt_t, 0.0)
    # dV/dT = F * pdf * sigma / (2 sqrt T); one day less to expiry lowers T by 1/365.
    theta_per_year = np.where(live, -f * pdf * stdev / (2.0 * np.where(live, tt, 1.0)), 0.0)
    return Greeks(
        price=value,
        delta=delta,
        gamma=gamma,
        vega=vega_per_unit_vol * VOL_POINT,
        theta=theta_per_year / DAYS_PER_YEAR,
    )
