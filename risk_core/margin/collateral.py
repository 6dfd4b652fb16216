"""Collateral inside scenarios, for the USD-pool models.

Each account's collateral is valued per asset at the index after the ruleset's haircut
(``amount * index * (1 - haircut)``, USD; the same valuation as the equity of
:func:`risk_core.margin.pools.pool_equity`). In a scenario an asset that is also an
underlying of the table moves with it; other assets (stablecoins) keep their value.
The growth factor of an account's collateral in scenario ``s`` is

    g_s = sum_a value_a (1 + m_a,s) / sum_a value_a,

floored at ``floor``, and 1 when the net haircut collateral is not positive (nothing to
scale: an account in deficit).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl
from numpy.typing import NDArray

from risk_core.margin.base import MarginInputs
from risk_core.scenarios import ScenarioSet

FloatArray = NDArray[np.float64]


def haircut_collateral(
    inputs: MarginInputs, haircuts: Mapping[str, float], scenarios: ScenarioSet
) -> tuple[FloatArray, FloatArray]:
    """Haircut USD value per account (rows of the position matrix) and asset
    ``(n_accounts, n_assets)``, and each asset's relative move per scenario
    ``(n_assets, n_scenarios)``."""
    coll = inputs.collateral
    accounts = inputs.positions.accounts
    assets = sorted(set(coll["asset"].to_list()))
    code_of = {a: i for i, a in enumerate(accounts)}
    a_code = {a: i for i, a in enumerate(assets)}
    value = np.zeros((len(accounts), len(assets)))
    if coll.height:
        rows = coll["account_id"].replace_strict(code_of, return_dtype=pl.Int64).to_numpy()
        cols = coll["asset"].replace_strict(a_code, return_dtype=pl.Int64).to_numpy()
        px = np.array([float(inputs.index_prices[a]) for a in coll["asset"].to_list()])
        cut = np.array([float(haircuts.get(a, 0.0)) for a in coll["asset"].to_list()])
        np.add.at(value, (rows, cols), coll["amount"].to_numpy() * px * (1.0 - cut))
    u_index = {u: i for i, u in enumerate(inputs.table.underlyings)}
    moves = np.zeros((len(assets), scenarios.n))
    for j, asset in enumerate(assets):
        if asset in u_index:
            moves[j] = scenarios.moves[u_index[asset]]
    return value, moves


def collateral_growth(value: FloatArray, moves: FloatArray, floor: float) -> FloatArray:
    """Growth factor ``g`` per account of ``value`` and scenario ``(n, n_scenarios)``."""
    today = value.sum(axis=1)
    # Asset by asset, not ``value @ moves``: a BLAS product's bits for one account depend
    # on how the rows are blocked (so on the shard), a fixed-order sum's do not.
    after = np.repeat(today[:, None], moves.shape[1], axis=1)
    for j in range(moves.shape[0]):
        after += value[:, j, None] * moves[j]
    positive = today > 0
    growth = np.ones_like(after)
    growth[positive] = after[positive] / today[positive, None]
    out: FloatArray = np.maximum(growth, floor)
    return out
