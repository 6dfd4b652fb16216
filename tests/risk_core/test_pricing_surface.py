"""The volatility surface: exact at its points, flat beyond, linear in total variance."""

import numpy as np
import pytest

from risk_core.pricing.vol_surface import VolSurface


def _surface() -> VolSurface:
    f = 100.0
    strikes = [80.0, 100.0, 120.0]
    return VolSurface.from_points(
        ["BTC"] * 6, [0.1] * 3 + [0.5] * 3, strikes * 2, [f] * 6, [0.6, 0.5, 0.55, 0.5, 0.45, 0.48]
    )


def test_exact_at_points_and_flat_beyond() -> None:
    s = _surface()
    np.testing.assert_allclose(s.vol("BTC", 0.1, [80.0, 100.0, 120.0], 100.0), [0.6, 0.5, 0.55])
    np.testing.assert_allclose(s.vol("BTC", [0.01, 2.0], [100.0, 100.0], 100.0), [0.5, 0.45])
    np.testing.assert_allclose(s.vol("BTC", 0.1, [10.0, 1000.0], 100.0), [0.6, 0.55])


def test_linear_in_total_variance_between_expiries() -> None:
    s = _surface()
    v = s.vol("BTC", 0.3, 100.0, 100.0)
    w = 0.5 * 0.5**2 * 0.1 + 0.5 * 0.45**2 * 0.5
    assert float(v) == pytest.approx(np.sqrt(w / 0.3), rel=1e-12)


def test_single_point_duplicates_and_bad_points() -> None:
    s = VolSurface.from_points(
        ["ETH", "ETH", "ETH"],
        [0.2, 0.2, np.nan],
        [100.0, 100.0, 90.0],
        [100.0] * 3,
        [0.4, 0.6, 0.9],
    )
    np.testing.assert_allclose(s.vol("ETH", [0.05, 1.0], [50.0, 200.0], 100.0), [0.5, 0.5])
    with pytest.raises(KeyError):
        s.vol("SOL", 0.1, 1.0, 1.0)
