"""``cross_grid``: SPAN-style cross-margin of every position and all collateral in one
USD pool.

1. Scan risk per underlying ``u``: a grid of relative moves ``price_range * j / steps``
   (j = -steps..steps) with the volatility down, unchanged and up
   (``sigma * (1 -/+ vol_range)``), plus extreme moves ``+/- extreme_multiple *
   price_range`` counted at ``extreme_weight``; only ``u`` moves in its scenarios.
   Each instrument is revalued once per scenario (the engine), accounts aggregate by
   the sparse position matrix.
2. Collateral inside the scenario: haircut collateral moves with its asset, and the
   loss of scenario ``s`` is scaled by the collateral's growth factor ``g_s`` (haircut
   collateral value in ``s`` over today's): the account must hold today the collateral
   that still covers the loss after the collateral itself moved. A BTC-collateralized
   short put thus loses twice when BTC falls; no position means no loss, so no margin.
   ``g_s`` is floored at ``min_collateral_growth`` and is 1 without positive collateral.
3. Inter-underlying credit for each pair of the ruleset (BTC/ETH) when the legs' net
   USD deltas have opposite signs: ``credit_rate * 2 * min(R_a, R_b)``, at most the
   smaller leg's risk times two times the rate (the rate applies to both legs of the
   spread).
4. Short-option minimum: ``short_option_min_rate * index`` per short option unit; the
   requirement is at least the sum of those (the top-up is a component).
5. Liquidity add-on per position: ``liquidity_rate * excess * sqrt(excess /
   threshold)`` for USD notional above the underlying's ``liquidity_threshold_usd``.

IM = sum of scan risks - credit + short-option top-up + liquidity; MM = mm_factor * IM.
Contributions (Euler): each position's loss in its underlying's governing scenario
(scaled like the scan risk); the credit and the top-up allocated pro rata to the
positions' scan-risk and short-option charges; the add-on to its own position.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from risk_core.margin.base import (
    MarginInputs,
    MarginResult,
)
from risk_core.margin.pools import usd_pool_result
from risk_core.scenarios import ScenarioSet, revalue_usd

FloatArray = NDArray[np.float64]
#: A grid never moves an underlying below -95 % (a -100 % move has no forward).
MIN_MOVE = -0.95
VOL_LABELS = {-1: "vol_down", 0: "vol_flat", 1: "vol_up"}


def _param(params: Mapping[str, Any], name: str, underlying: str) -> float:
    per = params.get("underlyings", {}).get(underlying, {})
    return float(per.get(name, params[name]))


def grid(
    inputs: MarginInputs, params: Mapping[str, Any]
) -> tuple[ScenarioSet, FloatArray, NDArray[np.intp]]:
    """The scenario set, each scenario's loss weight and the underlying it moves."""
    t = inputs.table
    steps = int(params.get("steps", 4))
    names: list[str] = []
    columns: list[FloatArray] = []
    sigmas: list[FloatArray] = []
    weights: list[float] = []
    owner: list[int] = []
    n_u = len(t.underlyings)
    for u, name in enumerate(t.underlyings):
        rng_u = _param(params, "price_range", name)
        vol_range = _param(params, "vol_range", name)
        moves = [rng_u * j / steps for j in range(-steps, steps + 1)]
        mult = float(params.get("extreme_multiple", 2.0))
        points = [(m, v, 1.0) for m in moves for v in (-1, 0, 1)]
        points += [
            (-mult * rng_u, 0, float(params["extreme_weight"])),
            (mult * rng_u, 0, float(params["extreme_weight"])),
        ]
        mine = t.underlying_code == u
        for move, vol_state, weight in points:
            column = np.zeros(n_u)
            column[u] = max(move, MIN_MOVE)
            columns.append(column)
            sigma = t.sigma.copy()
            sigma[mine] = t.sigma[mine] * (1.0 + vol_state * vol_range)
            sigmas.append(sigma)
            weights.append(weight)
            owner.append(u)
            names.append(f"{name}:{move:+.4f}:{VOL_LABELS[vol_state]}")
    scenarios = ScenarioSet(tuple(names), np.stack(columns, axis=1), np.stack(sigmas, axis=1), 0.0)
    return scenarios, np.array(weights), np.array(owner, dtype=np.intp)


def compute(inputs: MarginInputs, params: Mapping[str, Any]) -> MarginResult:
    t = inputs.table
    pm = inputs.positions
    accounts = pm.accounts
    n_acc = pm.n_accounts
    haircuts = {k: float(v) for k, v in params.get("haircuts", {}).items()}
    scenarios, weight, owner = grid(inputs, params)
    pnl_instr = revalue_usd(t, scenarios)  # (n_instr, S)
    n_u = len(t.underlyings)

    # Collateral growth factor per account and scenario.
    coll = inputs.collateral
    code_of = {a: i for i, a in enumerate(accounts)}
    c_acc = coll["account_id"].replace_strict(code_of, return_dtype=pl.Int64).to_numpy()
    c_px = np.array([inputs.index_prices[a] for a in coll["asset"].to_list()], dtype=np.float64)
    c_cut = np.array([haircuts.get(a, 0.0) for a in coll["asset"].to_list()], dtype=np.float64)
    c_val = coll["amount"].to_numpy() * c_px * (1.0 - c_cut)
    u_index = {u: i for i, u in enumerate(t.underlyings)}
    c_move = np.zeros((coll.height, scenarios.n))
    for row, asset in enumerate(coll["asset"].to_list()):
        if asset in u_index:
            c_move[row] = scenarios.moves[u_index[asset]]
    value0 = np.bincount(c_acc, weights=c_val, minlength=n_acc)
    coll_pnl = np.zeros((n_acc, scenarios.n))
    np.add.at(coll_pnl, c_acc, c_val[:, None] * c_move)
    floor = float(params.get("min_collateral_growth", 0.1))
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.where(value0[:, None] > 0, (value0[:, None] + coll_pnl) / value0[:, None], 1.0)
    growth = np.maximum(growth, floor)

    scan = np.zeros((n_acc, n_u))
    raw_scan = np.zeros((n_acc, n_u))
    governing = np.zeros((n_acc, n_u), dtype=np.intp)
    for rows in pm.blocks():
        loss = -pm.account_pnl(pnl_instr, rows) * weight  # (b, S)
        scaled = loss / growth[rows]
        for u in range(n_u):
            cols = np.flatnonzero(owner == u)
            best = cols[np.argmax(scaled[:, cols], axis=1)]
            idx = np.arange(scaled.shape[0])
            governing[rows, u] = best
            scan[rows, u] = np.maximum(scaled[idx, best], 0.0)
            raw_scan[rows, u] = np.where(scaled[idx, best] > 0, loss[idx, best], 0.0)

    # Net USD delta per account and underlying, for the inter-underlying credit.
    g = t.unit_greeks()
    frame = inputs.positions_frame
    q = frame["quantity"].to_numpy().astype(np.float64)
    code = pm.instrument_code
    acc = pm.account_code
    pos_u = t.underlying_code[code]
    delta_usd = np.zeros((n_acc, n_u))
    np.add.at(delta_usd, (acc, pos_u), g.delta[code] * q * t.index[code])
    credit = np.zeros(n_acc)
    credit_by_u = np.zeros((n_acc, n_u))
    for pair in params.get("offsets", []):
        a_name, b_name = pair["pair"]
        if a_name not in u_index or b_name not in u_index:
            continue
        a, b = u_index[a_name], u_index[b_name]
        opposite = delta_usd[:, a] * delta_usd[:, b] < 0
        c = np.where(
            opposite, float(pair["credit_rate"]) * 2.0 * np.minimum(scan[:, a], scan[:, b]), 0.0
        )
        total = scan[:, a] + scan[:, b]
        with np.errstate(divide="ignore", invalid="ignore"):
            credit_by_u[:, a] += np.where(total > 0, c * scan[:, a] / total, 0.0)
            credit_by_u[:, b] += np.where(total > 0, c * scan[:, b] / total, 0.0)
        credit += c

    # Short option minimum and liquidity add-on per position.
    short_opt = t.is_option[code] & (q < 0)
    som_rate = np.array([_param(params, "short_option_min_rate", u) for u in t.underlyings])
    som_pos = np.where(short_opt, som_rate[pos_u] * t.index[code] * t.units[code] * -q, 0.0)
    threshold = np.array([_param(params, "liquidity_threshold_usd", u) for u in t.underlyings])
    notional = np.abs(q) * t.units[code] * t.forward[code]
    excess = np.maximum(notional - threshold[pos_u], 0.0)
    liq_pos = float(params["liquidity_rate"]) * excess * np.sqrt(excess / threshold[pos_u])
    som = np.bincount(acc, weights=som_pos, minlength=n_acc)
    liquidity = np.bincount(acc, weights=liq_pos, minlength=n_acc)

    base = scan.sum(axis=1) - credit
    topup = np.maximum(som - base, 0.0)
    im = base + topup + liquidity
    mm = float(params["mm_factor"]) * im

    # Contributions: Euler on the governing scenario of each position's underlying.
    gov = governing[acc, pos_u]
    scale = weight[gov] / growth[acc, gov]
    active = scan[acc, pos_u] > 0
    contrib = np.where(active, -q * pnl_instr[code, gov] * scale, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share_credit = np.where(
            scan[acc, pos_u] > 0, credit_by_u[acc, pos_u] / scan[acc, pos_u], 0.0
        )
        share_som = np.where(som[acc] > 0, som_pos / som[acc], 0.0)
    contrib = contrib * (1.0 - share_credit) + topup[acc] * share_som + liq_pos

    worst = raw_scan.sum(axis=1)
    components = {
        "worst_scenario_loss": worst,
        "collateral_wrong_way": scan.sum(axis=1) - worst,
        "inter_underlying_credit": -credit,
        "short_option_minimum": topup,
        "liquidity_addon": liquidity,
    }
    return usd_pool_result(inputs, haircuts, im, mm, components, contrib)
