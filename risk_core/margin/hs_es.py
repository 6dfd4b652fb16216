"""``hs_es``: filtered historical-simulation expected shortfall, in one USD pool.

1. Joint ``horizon_days`` log returns of every underlying from ``price_history`` (dates up
   to the business date only). Gaps of up to ``max_gap_days`` are forward-filled; an
   underlying whose history starts later takes, before its start, the return of the
   ``proxy`` underlying scaled by the ratio of their full-sample volatilities (a
   documented proxy: no position is ever dropped for lack of history).
2. EWMA volatility filtering (``ewma_decay``, 0.97 as LCH documents): each past return is
   rescaled to today's volatility, ``r * sigma_today / sigma_then``.
3. Scenarios: the last ``lookback_days`` filtered returns (recent set), and the unfiltered
   returns of the stressed window (the ``stress_window_days`` of highest average EWMA
   volatility of the proxy in the whole history up to the date; March 2020, May 2021,
   LUNA and FTX when covered). Options are fully revalued with a volatility move: the
   implied vol scales with the EWMA update the scenario return would cause,
   ``sqrt(decay + (1 - decay) r^2 / sigma^2) ** vol_beta``.
4. ES at ``confidence``: the mean of the worst ``ceil((1 - confidence) N)`` losses.
   Anti-procyclicality by stressed-period weighting: requirement = max(ES_recent,
   (1 - stress_weight) ES_recent + stress_weight ES_stress); the top-up is the
   ``procyclicality_floor`` component.
5. Euler contributions: each position's mean loss over the account's tail scenarios,
   blended like the requirement; they add up to it.

Equity: collateral after the haircuts of the parameters plus option and spot market
values, as for cross-margin. MM = mm_factor * IM.
"""

from __future__ import annotations

import math
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


class HistoryError(ValueError):
    """Price history that cannot support the model (names the underlying)."""


def joint_returns(
    history: pl.DataFrame, underlyings: tuple[str, ...], params: Mapping[str, Any]
) -> tuple[list[Any], FloatArray]:
    """Dates and ``horizon_days`` log returns ``(n_dates, n_underlyings)``, proxied where
    an underlying's history has not started."""
    h = int(params.get("horizon_days", 1))
    proxy = str(params.get("proxy", "BTC"))
    wide = (
        history.filter(pl.col("underlying").is_in(list({*underlyings, proxy})))
        .pivot("underlying", index="date", values="close", aggregate_function="last")
        .sort("date")
        .upsample("date", every="1d")
        .fill_null(strategy="forward", limit=int(params.get("max_gap_days", 7)))
    )
    if proxy not in wide.columns:
        raise HistoryError(f"no price history for the proxy underlying {proxy}")
    dates = wide["date"].to_list()
    logp = {u: np.log(wide[u].to_numpy().astype(np.float64)) for u in wide.columns if u != "date"}
    rets = {u: lp[h:] - lp[:-h] for u, lp in logp.items()}
    base = rets[proxy]
    base_vol = np.nanstd(base)
    out = np.empty((len(base), len(underlyings)))
    for j, u in enumerate(underlyings):
        if u not in rets or np.all(np.isnan(rets[u])):
            raise HistoryError(f"no price history for {u}")
        r = rets[u]
        scale = np.nanstd(r) / base_vol if base_vol > 0 else 1.0
        out[:, j] = np.where(np.isnan(r), base * scale, r)
    keep: NDArray[np.bool_] = np.asarray(~np.isnan(out).any(axis=1), dtype=np.bool_)
    return [d for d, k in zip(dates[h:], keep.tolist(), strict=True) if k], out[keep]


def ewma_vol(returns: FloatArray, decay: float) -> FloatArray:
    """EWMA volatility before each return (seeded with the first 30 returns' variance),
    and one more row: today's volatility after the last return."""
    n, m = returns.shape
    var = np.empty((n + 1, m))
    var[0] = np.mean(returns[: min(30, n)] ** 2, axis=0) + 1e-12
    for t in range(n):
        var[t + 1] = decay * var[t] + (1.0 - decay) * returns[t] ** 2
    return np.sqrt(var)


def _scenarios(inputs: MarginInputs, params: Mapping[str, Any]) -> tuple[ScenarioSet, ScenarioSet]:
    t = inputs.table
    decay = float(params["ewma_decay"])
    dates, r = joint_returns(inputs.price_history, t.underlyings, params)
    if len(dates) < 30:
        raise HistoryError(f"only {len(dates)} days of joint history up to {inputs.business_date}")
    vol = ewma_vol(r, decay)
    today = vol[-1]
    filtered = r * today / vol[:-1]
    lookback = int(params["lookback_days"])
    recent = filtered[-lookback:]
    proxy = (
        t.underlyings.index(str(params.get("proxy", "BTC")))
        if str(params.get("proxy", "BTC")) in t.underlyings
        else 0
    )
    window = min(int(params["stress_window_days"]), len(r))
    level = np.convolve(vol[:-1, proxy], np.ones(window) / window, mode="valid")
    start = int(np.argmax(level))
    stress = r[start : start + window]
    beta = float(params.get("vol_beta", 1.0))
    h = float(params.get("horizon_days", 1))

    def build(returns: FloatArray, label: str) -> ScenarioSet:
        moves = np.expm1(returns).T  # (n_underlyings, n)
        ratio = np.sqrt(decay + (1.0 - decay) * returns**2 / today**2) ** beta  # (n, n_u)
        sigma = t.sigma[:, None] * ratio.T[t.underlying_code]
        names = tuple(f"{label}:{i}" for i in range(returns.shape[0]))
        return ScenarioSet(names, np.maximum(moves, -0.99), sigma, h)

    return build(recent, "recent"), build(stress, "stress")


def _tail(loss: FloatArray, k: int) -> tuple[FloatArray, NDArray[np.intp]]:
    """ES (mean of the k largest losses per row) and their scenario indices."""
    idx = np.argpartition(loss, -k, axis=1)[:, -k:]
    idx.sort(axis=1)  # canonical order: the mean is then independent of partition order
    return np.take_along_axis(loss, idx, axis=1).mean(axis=1), idx


def compute(inputs: MarginInputs, params: Mapping[str, Any]) -> MarginResult:
    t = inputs.table
    pm = inputs.positions
    n_acc = pm.n_accounts
    confidence = float(params["confidence"])
    weight = float(params["stress_weight"])
    recent, stress = _scenarios(inputs, params)
    p_recent = revalue_usd(t, recent)
    p_stress = revalue_usd(t, stress)
    k_recent = max(1, math.ceil((1.0 - confidence) * recent.n))
    k_stress = max(1, math.ceil((1.0 - confidence) * stress.n))

    es_recent = np.zeros(n_acc)
    es_stress = np.zeros(n_acc)
    tail_recent = np.zeros((n_acc, k_recent), dtype=np.intp)
    tail_stress = np.zeros((n_acc, k_stress), dtype=np.intp)
    for rows in pm.blocks():
        es_recent[rows], tail_recent[rows] = _tail(-pm.account_pnl(p_recent, rows), k_recent)
        es_stress[rows], tail_stress[rows] = _tail(-pm.account_pnl(p_stress, rows), k_stress)
    es_recent = np.maximum(es_recent, 0.0)
    blended = (1.0 - weight) * es_recent + weight * np.maximum(es_stress, 0.0)
    floor_binds = blended > es_recent
    im = np.where(floor_binds, blended, es_recent)
    topup = im - es_recent
    mm = float(params["mm_factor"]) * im

    frame = inputs.positions_frame
    q = frame["quantity"].to_numpy().astype(np.float64)
    code = pm.instrument_code
    acc = pm.account_code
    c_recent = -q * p_recent[code[:, None], tail_recent[acc]].mean(axis=1)
    c_stress = -q * p_stress[code[:, None], tail_stress[acc]].mean(axis=1)
    has_loss = es_recent[acc] > 0
    contrib = np.where(
        floor_binds[acc],
        (1.0 - weight) * np.where(has_loss, c_recent, 0.0) + weight * c_stress,
        np.where(has_loss, c_recent, 0.0),
    )

    haircuts = {k: float(v) for k, v in params.get("haircuts", {}).items()}
    components = {"expected_shortfall": es_recent, "procyclicality_floor": topup}
    return usd_pool_result(inputs, haircuts, im, mm, components, contrib)
