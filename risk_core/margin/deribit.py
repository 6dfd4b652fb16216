"""``deribit_spm``: Deribit's segregated portfolio margin, per settlement pool.

Inverse BTC and ETH contracts margin in their coin (P&L in coin), linear contracts in
the ``USDC`` pool (P&L in USD), each underlying of a pool with its own risk matrix and
the pool's requirement the sum. For each pool (METHODOLOGY.md section 3):

* standard table: ``2 * buckets + 1`` moves from ``-price_range`` to ``+price_range``,
  each with volatility up, unchanged and down:
  ``vol_up = max(vol * (1 + volatility_range_up * (30 / DTE) ** power),
  min_volatility_for_shock_up)`` and ``vol_down = vol * (1 - volatility_range_down *
  (30 / DTE) ** power)``, ``power`` the short-term one below 30 days, DTE floored at
  ``min_dte_days`` (our guard against the 1/DTE blow-up; not published);
* extended table for far out-of-the-money options: moves -66 %, -33 %, +50 % ... +500 %,
  volatility up only, delta-one instruments capped at their +/- price_range P&L (as in
  Deribit's published responses); each move's loss counts ``price_range / |move|`` (the
  weights Paradex publishes for its comparable grid) and is softened by the dampener:
  ``L_eff = L^2 / (L + extended_dampener / index)`` (our reading: a soft threshold in USD;
  Deribit publishes the parameter, not the formula);
* aggregation per scenario over the pool: gains times ``pnl_offset``, losses whole;
  worst case = the largest aggregated loss of both tables (>= 0);
* roll shock: sum over futures and perpetuals of ``|size in coin| * max(min_annualised_move,
  annualised_move_risk * T)`` (in USD for the linear pool);
* delta shock: ``max_delta_shock * max(|net delta USD| - threshold, 0)``, in the pool's
  currency (our reading: Deribit publishes only that it is zero below the threshold);
* IM = worst case + roll shock + delta shock; MM = mm_factor * IM.

Contributions: Euler on the governing scenario (each position's loss there, with the
table weight and dampening), roll shock per position, delta shock by signed delta share.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from risk_core.margin.base import (
    ACCOUNT_SCHEMA,
    COMPONENT_SCHEMA,
    CONTRIBUTION_SCHEMA,
    MarginInputs,
    MarginResult,
)
from risk_core.margin.pools import instrument_pool, pool_equity, pool_usd
from risk_core.market import KIND_FUTURE, KIND_PERPETUAL
from risk_core.scenarios import ScenarioSet, revalue_coin, revalue_usd

FloatArray = NDArray[np.float64]
EXTENDED_MOVES = (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)
COMPONENTS = ("worst_scenario_loss", "extended_table_loss", "roll_shock", "delta_shock")


def currency_params(params: Mapping[str, Any], underlying: str) -> dict[str, Any]:
    """The parameter column of an underlying (``[currencies.<U>]``), else ``default``."""
    currencies = params["currencies"]
    chosen = currencies.get(underlying, currencies["default"])
    return {**currencies["default"], **chosen}


def _shocked_vols(
    sigma: FloatArray, t: FloatArray, p: Mapping[str, Any]
) -> tuple[FloatArray, FloatArray]:
    dte = np.maximum(t * 365.0, float(p.get("min_dte_days", 1.0)))
    power = np.where(dte < 30.0, p["short_term_vega_power"], p["long_term_vega_power"])
    factor = (30.0 / dte) ** power
    up = np.maximum(
        sigma * (1.0 + p["volatility_range_up"] * factor), p["min_volatility_for_shock_up"]
    )
    down = np.maximum(sigma * (1.0 - p["volatility_range_down"] * factor), 0.0)
    return up, down


def _tables(inputs: MarginInputs, u: int, p: Mapping[str, Any]):  # type: ignore[no-untyped-def]
    """Scenario sets of one underlying: (standard, extended, extended weights)."""
    t = inputs.table
    n_u = len(t.underlyings)
    r = float(p["price_range"])
    buckets = int(p.get("buckets", 4))
    moves = np.linspace(-r, r, 2 * buckets + 1)
    up, down = _shocked_vols(t.sigma, t.t, p)
    mine = t.underlying_code == u
    columns, sigmas, names = [], [], []
    for m in moves:
        for label, vol in (("vol_up", up), ("vol_flat", t.sigma), ("vol_down", down)):
            column = np.zeros(n_u)
            column[u] = m
            columns.append(column)
            sigmas.append(np.where(mine, vol, t.sigma))
            names.append(f"{m:+.4f}:{label}")
    standard = ScenarioSet(tuple(names), np.stack(columns, 1), np.stack(sigmas, 1))
    ext_cols = []
    for m in EXTENDED_MOVES:
        column = np.zeros(n_u)
        column[u] = m
        ext_cols.append(column)
    extended = ScenarioSet(
        tuple(f"{m:+.2f}:vol_up" for m in EXTENDED_MOVES),
        np.stack(ext_cols, 1),
        np.repeat(np.where(mine, up, t.sigma)[:, None], len(EXTENDED_MOVES), axis=1),
    )
    weights = np.array([r / abs(m) for m in EXTENDED_MOVES])
    return standard, extended, weights


def compute(inputs: MarginInputs, params: Mapping[str, Any]) -> MarginResult:
    t = inputs.table
    pm = inputs.positions
    n_acc = pm.n_accounts
    frame = inputs.positions_frame
    q = frame["quantity"].to_numpy().astype(np.float64)
    code = pm.instrument_code
    acc = pm.account_code
    pools = instrument_pool(inputs, "settlement")
    pos_pool = pools[code]
    greeks = t.unit_greeks()

    contribution = np.zeros(len(q))
    rows: list[tuple[str, str, float, float]] = []  # account, pool, im, mm
    comp_rows: list[tuple[str, str, str, float]] = []
    accounts = np.array(pm.accounts, dtype=object)
    for pool in sorted(set(pools.tolist())):
        in_pool = pools == pool
        coin = pool != "USDC"
        comp = {name: np.zeros(n_acc) for name in COMPONENTS}
        for u, name in enumerate(t.underlyings):
            cols = np.flatnonzero(in_pool & (t.underlying_code == u))
            if cols.size == 0:
                continue
            p = currency_params(params, name)
            index = t.index[cols][0]
            standard, extended, weights = _tables(inputs, u, p)
            revalue = revalue_coin if coin else revalue_usd
            pnl_std = revalue(t, standard)[cols]
            pnl_ext = revalue(t, extended)[cols]
            # Delta-one instruments in the extended table: capped at the +/- range P&L.
            r = float(p["price_range"])
            capped = ScenarioSet(
                extended.names, np.clip(extended.moves, -r, r), extended.sigma, 0.0
            )
            delta_one = np.isin(t.kind[cols], (KIND_FUTURE, KIND_PERPETUAL)) | ~t.is_option[cols]
            pnl_ext[delta_one] = revalue(t, capped)[cols][delta_one]
            sub = pm.matrix[:, cols]
            acc_std = np.asarray(sub @ pnl_std)
            acc_ext = np.asarray(sub @ pnl_ext)
            offset = float(p["pnl_offset"])
            agg_std = np.where(acc_std > 0, acc_std * offset, acc_std)
            agg_ext = np.where(acc_ext > 0, acc_ext * offset, acc_ext)
            loss_std = -agg_std
            loss_ext_w = -agg_ext * weights
            damp = float(p["extended_dampener"]) / (index if coin else 1.0)
            positive = np.maximum(loss_ext_w, 0.0)
            loss_ext = positive * positive / (positive + damp)
            s_std = np.argmax(loss_std, axis=1)
            s_ext = np.argmax(loss_ext, axis=1)
            idx = np.arange(n_acc)
            worst_std = np.maximum(loss_std[idx, s_std], 0.0)
            worst_ext = loss_ext[idx, s_ext]
            use_ext = worst_ext > worst_std
            comp["worst_scenario_loss"] += worst_std
            comp["extended_table_loss"] += np.where(use_ext, worst_ext - worst_std, 0.0)

            # Roll shock per futures/perpetual position.
            in_u = np.isin(code, cols)
            roll_rate = np.maximum(
                float(p["min_annualised_move"]), float(p["annualised_move_risk"]) * t.t[code]
            )
            is_d1 = in_u & np.isin(t.kind[code], (KIND_FUTURE, KIND_PERPETUAL))
            size = np.abs(q) * t.units[code] * (1.0 if coin else t.index[code])
            roll_pos = np.where(is_d1, size * roll_rate, 0.0)
            comp["roll_shock"] += np.bincount(acc, weights=roll_pos, minlength=n_acc)

            # Delta shock on net USD delta above the threshold.
            delta_pos = np.where(in_u, greeks.delta[code] * q, 0.0)
            net = np.bincount(acc, weights=delta_pos, minlength=n_acc)
            excess = np.maximum(
                np.abs(net) * index - float(p["delta_total_liq_shock_threshold"]), 0.0
            )
            shock = float(p["max_delta_shock"]) * excess / (index if coin else 1.0)
            comp["delta_shock"] += shock

            # Contributions: Euler on the governing scenario.
            gov_std = s_std[acc]
            gov_ext = s_ext[acc]
            local = np.searchsorted(cols, code)
            local = np.where(in_u, np.minimum(local, cols.size - 1), 0)
            c_std = -q * pnl_std[local, gov_std]
            acc_total_std = acc_std[acc, gov_std]
            c_std = np.where(acc_total_std > 0, c_std * offset, c_std)  # a gain: offset
            scale_ext = np.where(
                positive[acc, gov_ext] > 0,
                weights[gov_ext]
                * loss_ext[acc, gov_ext]
                / np.maximum(positive[acc, gov_ext], 1e-300),
                0.0,
            )
            c_ext = -q * pnl_ext[local, gov_ext] * scale_ext
            c_ext = np.where(acc_ext[acc, gov_ext] > 0, c_ext * offset, c_ext)
            governed = np.where(use_ext[acc], c_ext, np.where(worst_std[acc] > 0, c_std, 0.0))
            with np.errstate(divide="ignore", invalid="ignore"):
                share = np.where(net[acc] != 0, delta_pos / net[acc], 0.0)
            contribution += np.where(in_u, governed + roll_pos + shock[acc] * share, 0.0)

        im = np.sum(np.stack(list(comp.values())), axis=0)
        has = np.bincount(acc[pos_pool == pool], minlength=n_acc) > 0
        mm_factor = float(currency_params(params, "default")["mm_factor"])
        for a in np.flatnonzero(has):
            rows.append((str(accounts[a]), pool, float(im[a]), float(mm_factor * im[a])))
            comp_rows.extend(
                (str(accounts[a]), pool, name, float(comp[name][a])) for name in COMPONENTS
            )

    margins = pl.DataFrame(
        rows,
        schema={
            "account_id": pl.String,
            "pool_currency": pl.String,
            "initial_margin": pl.Float64,
            "maintenance_margin": pl.Float64,
        },
        orient="row",
    )
    equity = pool_equity(inputs, "settlement")
    everyone = pl.DataFrame({"account_id": list(pm.accounts)})
    joined = equity.join(margins, on=["account_id", "pool_currency"], how="full", coalesce=True)
    missing = everyone.join(joined.select("account_id").unique(), on="account_id", how="anti")
    joined = pl.concat(
        [joined, missing.with_columns(pl.lit("USD").alias("pool_currency"))], how="diagonal"
    ).with_columns(pl.col("equity", "initial_margin", "maintenance_margin").fill_null(0.0))
    rates = {
        c: pool_usd(c, inputs.index_prices) for c in joined["pool_currency"].unique().to_list()
    }
    accounts_frame = joined.with_columns(
        pl.col("pool_currency").replace_strict(rates, return_dtype=pl.Float64).alias("pool_usd")
    ).sort("account_id", "pool_currency")
    components = pl.DataFrame(comp_rows, schema=COMPONENT_SCHEMA, orient="row")
    contributions = pl.DataFrame(
        {
            "account_id": frame["account_id"],
            "instrument_id": frame["instrument_id"],
            "pool_currency": pos_pool.astype(str),
            "amount": contribution,
        },
        schema=CONTRIBUTION_SCHEMA,
    )
    return MarginResult(accounts_frame.select(ACCOUNT_SCHEMA.names()), components, contributions)
