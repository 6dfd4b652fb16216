"""``cross_grid``: SPAN-style cross-margin of every position and all collateral of an
account in one USD pool.

1. Scan risk per underlying ``u`` (SPAN's combined commodity). A grid of relative moves
   ``price_range * j / steps`` (j = -steps..steps) with the option volatility down,
   unchanged and up (``sigma * (1 -/+ vol_range)``), plus the extreme moves ``+/-
   extreme_multiple * price_range`` with the volatility up, counted at
   ``extreme_weight``; only ``u`` moves in its scenarios. Each instrument is revalued
   once per scenario (the engine, USD), accounts aggregate by the sparse position matrix.
2. Collateral inside the scenario. Haircut collateral moves with its asset: ``g_s`` =
   haircut collateral value in scenario ``s`` / today's. The account must hold today the
   collateral ``C`` that still covers the loss after the collateral itself moved, ``C
   g_s >= loss_s``, so the requirement of scenario ``s`` is ``loss_s / g_s``: zero
   without positions, and a BTC-collateralized short put loses twice when BTC falls.
   ``g_s`` is floored at ``min_collateral_growth`` and is 1 when the net haircut
   collateral is not positive (an account in deficit gets the plain loss).
   ``SR_u = max(0, max_s loss_s / g_s)``; ``worst_scenario_loss`` is the loss of the
   governing scenario, ``collateral_wrong_way`` the rest (negative when the collateral
   gains in the governing scenario, e.g. coin collateral behind a short call).
3. Inter-underlying credit (METHODOLOGY.md section 4, CME SPAN), for each ``offsets``
   pair in the ruleset's order. Price risk ``PR_u`` = the largest scaled loss over the
   unchanged-volatility grid points (<= ``SR_u``); composite delta ``D_u`` = the
   account's USD P&L per unit relative move, by central difference over the first grid
   step; weighted price risk ``WPR_u = PR_u / |D_u|``. When the deltas have opposite
   signs, ``spreads = min(|D_a| / r_a, |D_b| / r_b)`` for the ``delta_ratio`` ``(r_a,
   r_b)`` (USD delta of each leg per spread); credit per leg ``= spreads * r_u * WPR_u
   * credit_rate``; a leg's delta used in one pair is not available to the next. With
   ``cap_at_smaller_leg`` (default true) the pair's credit is at most the smaller
   leg's price risk (the hedged pair never needs less than its larger leg alone; legs
   scaled alike). CME's published example (rate 55 %) exceeds that cap: it is
   reproduced with the cap off.
4. Short-option minimum per underlying: ``short_option_min_rate * index`` per short
   option unit; ``requirement_u = max(SR_u - credit_u, SOM_u)``; the top-up is the
   ``short_option_minimum`` component.
5. Liquidity / concentration add-on per position (the landing data has no open
   interest): USD notional of the underlying ``|q| units F`` above the underlying's
   ``liquidity_threshold_usd`` pays ``liquidity_rate * excess * sqrt(excess /
   threshold)`` (square-root market impact: the cost per unit grows with the square root
   of the size). Options count their full underlying notional (conservative).

IM = sum_u requirement_u + liquidity; MM = mm_factor * IM. Components add up to IM.
Contributions: Euler for the scan part (each position's scaled loss in its underlying's
governing scenario, they add up to ``SR_u``); the credit of ``u`` pro rata to those; the
top-up of ``u`` pro rata to the positions' short-option minimums; the add-on to its own
position. Equity is :func:`risk_core.margin.pools.pool_equity` with the haircuts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from risk_core.margin.base import MarginInputs, MarginResult
from risk_core.margin.collateral import collateral_growth, haircut_collateral
from risk_core.margin.pools import usd_pool_result
from risk_core.scenarios import ScenarioSet, revalue_usd

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
#: A grid never moves an underlying below -95 % (a -100 % move has no forward).
MIN_MOVE = -0.95
VOL_LABELS = {-1: "vol_down", 0: "vol_flat", 1: "vol_up"}


def _param(params: Mapping[str, Any], name: str, underlying: str) -> float:
    per = params.get("underlyings", {}).get(underlying, {})
    return float(per.get(name, params[name]))


@dataclass(frozen=True)
class Grid:
    scenarios: ScenarioSet
    weight: FloatArray  #: loss weight per scenario (1, or extreme_weight)
    owner: IntArray  #: the underlying each scenario moves
    flat: NDArray[np.bool_]  #: unchanged volatility, inside the price range
    up: IntArray  #: per underlying: the scenario at +1 step, vol unchanged
    down: IntArray  #: per underlying: the scenario at -1 step, vol unchanged
    step: FloatArray  #: per underlying: the relative move of one step


def grid(
    inputs: MarginInputs, params: Mapping[str, Any]
) -> tuple[ScenarioSet, FloatArray, IntArray]:
    """The scan scenarios, each scenario's loss weight and the underlying it moves."""
    g = scan_grid(inputs, params)
    return g.scenarios, g.weight, g.owner


def scan_grid(inputs: MarginInputs, params: Mapping[str, Any]) -> Grid:
    """The scan scenarios of every underlying of the table (module doc, 1)."""
    t = inputs.table
    steps = int(params.get("steps", 4))
    n_u = len(t.underlyings)
    names: list[str] = []
    columns: list[FloatArray] = []
    sigmas: list[FloatArray] = []
    weight: list[float] = []
    owner: list[int] = []
    flat: list[bool] = []
    up = np.zeros(n_u, dtype=np.intp)
    down = np.zeros(n_u, dtype=np.intp)
    step = np.zeros(n_u)
    for u, name in enumerate(t.underlyings):
        rng_u = _param(params, "price_range", name)
        vol_range = _param(params, "vol_range", name)
        mult = _param(params, "extreme_multiple", name)
        extreme = _param(params, "extreme_weight", name)
        step[u] = rng_u / steps
        points = [(rng_u * j / steps, v, 1.0) for j in range(-steps, steps + 1) for v in (-1, 0, 1)]
        points += [(-mult * rng_u, 1, extreme), (mult * rng_u, 1, extreme)]
        mine = t.underlying_code == u
        for move, vol_state, w in points:
            if vol_state == 0 and w == 1.0 and abs(move - step[u]) < 1e-12:
                up[u] = len(names)
            if vol_state == 0 and w == 1.0 and abs(move + step[u]) < 1e-12:
                down[u] = len(names)
            column = np.zeros(n_u)
            column[u] = max(move, MIN_MOVE)
            columns.append(column)
            sigma = t.sigma.copy()
            sigma[mine] = t.sigma[mine] * max(1.0 + vol_state * vol_range, 0.0)
            sigmas.append(sigma)
            weight.append(w)
            owner.append(u)
            flat.append(vol_state == 0 and w == 1.0)
            names.append(f"{name}:{move:+.4f}:{VOL_LABELS[vol_state]}")
    scenarios = ScenarioSet(
        tuple(names),
        np.stack(columns, axis=1) if columns else np.zeros((n_u, 0)),
        np.stack(sigmas, axis=1) if sigmas else np.zeros((len(t), 0)),
        0.0,
    )
    return Grid(
        scenarios,
        np.array(weight),
        np.array(owner, dtype=np.intp),
        np.array(flat, dtype=bool),
        up,
        down,
        step,
    )


def inter_underlying_credit(
    price_risk: FloatArray,
    delta: FloatArray,
    underlyings: tuple[str, ...],
    offsets: list[Mapping[str, Any]],
) -> FloatArray:
    """Credit per account and underlying leg, ``(n_accounts, n_underlyings)`` (module
    doc, 3). ``price_risk`` and ``delta`` (USD per unit relative move) are per account
    and underlying."""
    index = {u: i for i, u in enumerate(underlyings)}
    credit = np.zeros_like(price_risk)
    left = np.abs(delta)
    for pair in offsets:
        a_name, b_name = (str(x) for x in pair["pair"])
        if a_name not in index or b_name not in index:
            continue
        a, b = index[a_name], index[b_name]
        r_a, r_b = (float(x) for x in pair.get("delta_ratio", (1.0, 1.0)))
        rate = float(pair["credit_rate"])
        opposite = (delta[:, a] * delta[:, b] < 0) & (left[:, a] > 0) & (left[:, b] > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            spreads = np.where(opposite, np.minimum(left[:, a] / r_a, left[:, b] / r_b), 0.0)
            wpr_a = np.where(opposite, price_risk[:, a] / np.abs(delta[:, a]), 0.0)
            wpr_b = np.where(opposite, price_risk[:, b] / np.abs(delta[:, b]), 0.0)
        leg_a = spreads * r_a * wpr_a * rate
        leg_b = spreads * r_b * wpr_b * rate
        total = leg_a + leg_b
        cap = (
            np.minimum(price_risk[:, a], price_risk[:, b])
            if bool(pair.get("cap_at_smaller_leg", True))
            else np.full(total.shape, np.inf)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(total > cap, cap / total, 1.0)
        credit[:, a] += leg_a * scale
        credit[:, b] += leg_b * scale
        left[:, a] -= spreads * r_a
        left[:, b] -= spreads * r_b
    return credit


def compute(inputs: MarginInputs, params: Mapping[str, Any]) -> MarginResult:
    """Cross-margin of every account in one USD pool (module doc)."""
    t = inputs.table
    pm = inputs.positions
    n_acc = pm.n_accounts
    n_u = len(t.underlyings)
    haircuts = {k: float(v) for k, v in params.get("haircuts", {}).items()}
    g = scan_grid(inputs, params)
    pnl_instr = revalue_usd(t, g.scenarios)  # (n_instruments, S)
    value, moves = haircut_collateral(inputs, haircuts, g.scenarios)
    floor = float(params.get("min_collateral_growth", 0.1))

    scan = np.zeros((n_acc, n_u))
    raw = np.zeros((n_acc, n_u))
    price_risk = np.zeros((n_acc, n_u))
    delta = np.zeros((n_acc, n_u))
    governing = np.zeros((n_acc, n_u), dtype=np.intp)
    growth_gov = np.ones((n_acc, n_u))
    for rows in pm.blocks():
        pnl = pm.account_pnl(pnl_instr, rows)
        loss = -pnl * g.weight
        growth = collateral_growth(value[rows], moves, floor)
        scaled = loss / growth
        idx = np.arange(loss.shape[0])
        for u in range(n_u):
            cols = np.flatnonzero(g.owner == u)
            best = cols[np.argmax(scaled[:, cols], axis=1)]
            positive = scaled[idx, best] > 0
            governing[rows, u] = best
            growth_gov[rows, u] = growth[idx, best]
            scan[rows, u] = np.where(positive, scaled[idx, best], 0.0)
            raw[rows, u] = np.where(positive, loss[idx, best], 0.0)
            flat = np.flatnonzero((g.owner == u) & g.flat)
            price_risk[rows, u] = np.maximum(scaled[:, flat].max(axis=1), 0.0)
            delta[rows, u] = (pnl[:, g.up[u]] - pnl[:, g.down[u]]) / (2.0 * g.step[u])
    credit = inter_underlying_credit(
        price_risk, delta, t.underlyings, list(params.get("offsets", []))
    )

    # Short-option minimum and liquidity add-on per position.
    q = inputs.positions_frame["quantity"].to_numpy().astype(np.float64)
    code = pm.instrument_code
    acc = pm.account_code
    pos_u = t.underlying_code[code]
    som_rate = np.array([_param(params, "short_option_min_rate", u) for u in t.underlyings])
    short_opt = t.is_option[code] & (q < 0)
    som_pos = np.where(short_opt, som_rate[pos_u] * t.index[code] * t.units[code] * -q, 0.0)
    som = np.zeros((n_acc, n_u))
    np.add.at(som, (acc, pos_u), som_pos)
    threshold = np.array([_param(params, "liquidity_threshold_usd", u) for u in t.underlyings])
    notional = np.abs(q) * t.units[code] * t.forward[code]
    excess = np.maximum(notional - threshold[pos_u], 0.0)
    liq_pos = float(params["liquidity_rate"]) * excess * np.sqrt(excess / threshold[pos_u])
    liquidity = np.bincount(acc, weights=liq_pos, minlength=n_acc)

    after_credit = scan - credit
    topup = np.maximum(som - after_credit, 0.0)
    im = (after_credit + topup).sum(axis=1) + liquidity
    mm = float(params["mm_factor"]) * im

    # Contributions (module doc): Euler on the governing scenario of the position's
    # underlying, the credit and the top-up pro rata, the add-on to its own position.
    gov = governing[acc, pos_u]
    active = scan[acc, pos_u] > 0
    euler = np.where(
        active, -q * pnl_instr[code, gov] * g.weight[gov] / growth_gov[acc, pos_u], 0.0
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = np.where(active, 1.0 - credit[acc, pos_u] / scan[acc, pos_u], 0.0)
        share_som = np.where(som[acc, pos_u] > 0, som_pos / som[acc, pos_u], 0.0)
    contrib = euler * keep + topup[acc, pos_u] * share_som + liq_pos

    worst = raw.sum(axis=1)
    components = {
        "worst_scenario_loss": worst,
        "collateral_wrong_way": scan.sum(axis=1) - worst,
        "inter_underlying_credit": -credit.sum(axis=1),
        "short_option_minimum": topup.sum(axis=1),
        "liquidity_addon": liquidity,
    }
    return usd_pool_result(inputs, haircuts, im, mm, components, contrib)
