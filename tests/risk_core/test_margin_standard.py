"""The standard per-position baseline against the published example (METHODOLOGY.md
section 8, Bybit linear USDC option)."""

import numpy as np
import pytest

from risk_core.margin.standard import option_requirements

PARAMS = {"im_otm_rate": 0.15, "im_min_rate": 0.10, "mm_rate": 0.03, "mm_index_rate": 0.002}


def test_published_short_put_example() -> None:
    # Short put K 18,500, index 20,250, mark 290: MM 938, IM 2,315 (OTM amount 1,750).
    im, mm = option_requirements(
        np.array([20_250.0]), np.array([18_500.0]), np.array([False]), np.array([290.0]), PARAMS
    )
    assert mm[0] == pytest.approx(0.03 * 20_250 + 290 + 0.002 * 20_250)
    assert round(mm[0]) == 938
    assert im[0] == pytest.approx(2_315.0)


def test_in_the_money_short_call_pays_the_full_rate() -> None:
    im, _ = option_requirements(
        np.array([100.0]), np.array([90.0]), np.array([True]), np.array([12.0]), PARAMS
    )
    assert im[0] == pytest.approx(0.15 * 100 + 12.0)
