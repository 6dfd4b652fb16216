"""Black-76 (r = 0) against QuantLib, identities, bump-and-reprice and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk_core.pricing import black76
from risk_core.pricing.implied_vol import (
    ABOVE_UPPER_BOUND,
    BELOW_INTRINSIC,
    EXPIRED,
    INVALID_INPUT,
    implied_vol,
)

ql = pytest.importorskip("QuantLib")


def _random_options(n: int, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    f = rng.uniform(10.0, 100_000.0, n)
    k = f * np.exp(rng.uniform(-1.0, 1.0, n))
    t = rng.uniform(1.0 / 365.0, 3.0, n)
    s = rng.uniform(0.05, 2.5, n)
    c = rng.random(n) < 0.5
    return f, k, t, s, c


def test_against_quantlib() -> None:
    f, k, t, s, c = _random_options(400)
    g = black76.greeks(f, k, t, s, c)
    for i in range(len(f)):
        payoff = ql.PlainVanillaPayoff(ql.Option.Call if c[i] else ql.Option.Put, float(k[i]))
        calc = ql.BlackCalculator(payoff, float(f[i]), float(s[i] * math.sqrt(t[i])), 1.0)
        scale = max(float(f[i]), float(k[i]))
        assert g.price[i] == pytest.approx(calc.value(), rel=1e-9, abs=1e-12 * scale)
        assert g.delta[i] == pytest.approx(calc.deltaForward(), rel=1e-7, abs=1e-12)
        assert g.gamma[i] == pytest.approx(calc.gammaForward(), rel=1e-7, abs=1e-15)
        assert g.vega[i] == pytest.approx(calc.vega(float(t[i])) * 0.01, rel=1e-7, abs=1e-12)
        theta = calc.thetaPerDay(float(f[i]), float(t[i]))
        assert g.theta[i] == pytest.approx(theta, rel=1e-7, abs=1e-12)


def test_put_call_parity() -> None:
    f, k, t, s, _ = _random_options(10_000, 1)
    call = black76.price(f, k, t, s, True)
    put = black76.price(f, k, t, s, False)
    assert np.all(np.abs((call - put) - (f - k)) <= 1e-12 * np.maximum(f, k) * 10)


def test_bump_and_reprice() -> None:
    f, k, t, s, c = _random_options(2_000, 2)
    g = black76.greeks(f, k, t, s, c)
    h = 1e-4 * f
    up, down = black76.price(f + h, k, t, s, c), black76.price(f - h, k, t, s, c)
    np.testing.assert_allclose((up - down) / (2 * h), g.delta, rtol=1e-5, atol=1e-7)
    gamma_fd = (up - 2 * black76.price(f, k, t, s, c) + down) / h**2
    assert np.all(np.abs(gamma_fd - g.gamma) <= 1e-3 * g.gamma + 1e-6 / f)
    dv = 1e-5
    vega_fd = (black76.price(f, k, t, s + dv, c) - black76.price(f, k, t, s - dv, c)) / (2 * dv)
    assert np.all(np.abs(vega_fd * 0.01 - g.vega) <= 1e-5 * g.vega + 1e-9 * f)
    day = 1.0 / 365.0
    theta_fd = (black76.price(f, k, t - 1e-3 * day, s, c) - black76.price(f, k, t, s, c)) / 1e-3
    assert np.all(np.abs(theta_fd - g.theta) <= 1e-3 * np.abs(g.theta) + 1e-9 * f)


def test_expiry_and_zero_vol_edges() -> None:
    f = np.array([100.0, 100.0, 100.0, 100.0])
    k = np.array([90.0, 110.0, 100.0, 90.0])
    g = black76.greeks(
        f, k, [0.0, -1.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.0], [True, False, True, False]
    )
    np.testing.assert_array_equal(g.price, [10.0, 10.0, 0.0, 0.0])
    np.testing.assert_array_equal(g.delta, [1.0, -1.0, 0.5, 0.0])
    for greek in (g.gamma, g.vega, g.theta):
        np.testing.assert_array_equal(greek, 0.0)


def test_extreme_inputs_stay_finite() -> None:
    f = np.array([1e5, 1e5, 1e-3, 1e9])
    k = np.array([1e-3, 1e9, 1e5, 1e-3])
    g = black76.greeks(
        f, k, [10.0, 1e-9, 5.0, 1e-6], [50.0, 1e-6, 10.0, 3.0], [True, True, False, False]
    )
    for greek in g:
        assert np.all(np.isfinite(greek))


@settings(max_examples=300, deadline=None)
@given(
    f=st.floats(1.0, 1e6),
    m=st.floats(-2.0, 2.0),
    t=st.floats(1e-4, 5.0),
    s1=st.floats(0.01, 3.0),
    ds=st.floats(0.0, 1.0),
    call=st.booleans(),
)
def test_price_bounds_and_monotone_in_vol(
    f: float, m: float, t: float, s1: float, ds: float, call: bool
) -> None:
    k = f * math.exp(m)
    low, high = black76.price(f, k, t, [s1, s1 + ds], call)
    intrinsic = max(f - k, 0.0) if call else max(k - f, 0.0)
    assert intrinsic - 1e-9 * f <= low <= high + 1e-9 * max(f, k)
    assert high <= (f if call else k) * (1 + 1e-12)
    assert all(np.isfinite(x) for x in black76.greeks(f, k, t, s1, call))


def test_implied_vol_round_trip() -> None:
    f, k, t, s, c = _random_options(200_000, 3)
    price = black76.price(f, k, t, s, c)
    result = implied_vol(price, f, k, t, c)
    ok = result.ok
    # Where the time value is below double precision the price is intrinsic: reported.
    assert ok.mean() > 0.97
    repriced = black76.price(f[ok], k[ok], t[ok], result.vol[ok], c[ok])
    assert np.max(np.abs(repriced - price[ok]) / np.maximum(f[ok], 1.0)) < 1e-10
    assert np.all(result.status[~ok] == BELOW_INTRINSIC)


def test_implied_vol_statuses() -> None:
    r = implied_vol(
        [5.0, 150.0, 1.0, np.nan, 3.0],
        [100.0, 100.0, 100.0, 100.0, 100.0],
        [100.0, 90.0, 100.0, 100.0, 110.0],
        [1.0, 1.0, 0.0, 1.0, 1.0],
        [True, True, True, True, True],
    )
    assert r.status.tolist() == [0, ABOVE_UPPER_BOUND, EXPIRED, INVALID_INPUT, 0]
    assert r.vol[1] == 0.0 and np.all(np.isfinite(r.vol))
    r2 = implied_vol([10.0], [100.0], [90.0], [1.0], [True])  # exactly intrinsic
    assert r2.status[0] == BELOW_INTRINSIC
