"""``hs_es``: filtered historical-simulation expected shortfall, in one USD pool.

1. History. Joint ``horizon_days`` log returns of every underlying of the table from
   ``price_history``, rows dated up to the business date only (filtered here again, so
   the model cannot look ahead whatever it is given). Gaps of up to ``max_gap_days``
   are forward-filled (the gap's move lands on the day prices resume). Dates are those
   of the ``proxy`` underlying (the configured one, else the longest history).
   No position is dropped for lack of history; missing returns are filled and logged:

   * before an underlying's history starts (or in a gap longer than ``max_gap_days``):
     ``beta * r_proxy + e``, with ``beta`` the regression slope on the overlap and
     ``e`` the underlying's own overlap residuals taken in turn (``e[j mod n]``,
     deterministic). This keeps its volatility and its correlation to the proxy, so a
     hedge against the proxy is not made perfect by the fill;
   * an underlying with fewer than ``min_overlap_days`` returns of its own: the
     proxy's return times ``missing_vol_multiplier`` (full co-movement, more volatile).
2. Filtering (FHS). EWMA variance ``v[t+1] = decay v[t] + (1 - decay) r[t]^2``
   (``ewma_decay`` 0.97 as LCH documents; seeded with the mean square of the first 30
   returns); ``z[t] = r[t] / sqrt(v[t])``; recent scenarios are ``z[t] * sqrt(v[n])``,
   today's volatility, over the last ``lookback_days`` (0: the whole history). At least
   ``min_history_days`` joint returns are required.
3. Stressed observations (anti-procyclicality). Over the last ``stress_lookback_days``
   (10 years), the days whose proxy EWMA volatility *after* the day's return is in the
   top ``stress_fraction``; their returns enter unfiltered. A crash day is in its own
   stress set by construction (its return lifts the volatility), e.g. 2020-03-12.
4. Options are fully revalued (Black-76, aged by the horizon) with a volatility move:
   the implied vol of an option on ``u`` is multiplied by the EWMA volatility ratio the
   scenario day caused, ``sqrt(decay + (1 - decay) z^2) ** vol_beta`` (``z`` of ``u``):
   quiet days lower the vol slightly, crash days raise it (x2.5 for a 13-sigma day).
5. Measure. ES at ``confidence`` (Acerbi-Tasche, with a fractional boundary
   observation): the probability-weighted mean of the worst ``1 - confidence`` mass of
   the loss distribution. ``ES_recent`` on the recent scenarios (equal weights);
   ``ES_mix`` on the mixture giving the stressed observations ``stress_weight`` (25 %,
   EMIR RTS 153/2013 art. 28(1)(b)) of the mass. IM = max(ES_recent, ES_mix, 0); the
   component ``procyclicality_floor`` is the top-up over ``expected_shortfall``.
   ``stress_weight = 1`` with ``stress_fraction = 1`` gives the other EMIR tool, the
   floor of an unfiltered 10-year lookback.
6. Euler contributions: each position's probability-weighted mean loss over the tail
   of the binding measure (so they add up to the IM; zero when the IM is zero).

ES is positively homogeneous (positions x k -> ES x k) and ES >= VaR at the same
confidence. Equity (collateral after the parameters' haircuts plus option and spot
values) is :func:`risk_core.margin.pools.pool_equity`, the same as ``cross_grid``.
MM = mm_factor * IM. The measure and the contributions run in the compiled kernels of
:mod:`risk_core.margin.tail_kernel` (one pass per account, no accounts x scenarios
matrix); :func:`weighted_tail` is the same measure in NumPy, the reference the tests
hold the kernels to.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from risk_core.margin import tail_kernel
from risk_core.margin.base import MarginInputs, MarginResult
from risk_core.margin.pools import usd_pool_result
from risk_core.scenarios import ScenarioSet, revalue_usd

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
log = logging.getLogger(__name__)

#: A scenario never moves an underlying below -99 %.
MIN_MOVE = -0.99
EWMA_SEED_DAYS = 30


class HistoryError(ValueError):
    """Price history that cannot support the model (names the underlying)."""


@dataclass(frozen=True)
class JointReturns:
    dates: list[dt.date]  #: date of each return (its end date)
    returns: FloatArray  #: (n_dates, n_underlyings) log returns over horizon_days
    underlyings: tuple[str, ...]
    proxy: str
    proxy_returns: FloatArray  #: (n_dates,) the proxy's own returns (it sets the dates)
    #: underlying -> number of its returns that were filled, and how
    filled: dict[str, tuple[int, str]] = field(default_factory=dict)


def joint_returns(
    history: pl.DataFrame,
    underlyings: tuple[str, ...],
    params: Mapping[str, Any],
    business_date: dt.date | None = None,
) -> JointReturns:
    """Joint ``horizon_days`` log returns of ``underlyings`` (rules in the module doc)."""
    h = int(params.get("horizon_days", 1))
    if business_date is not None:
        history = history.filter(pl.col("date") <= business_date)
    history = history.filter(pl.col("close") > 0)
    have = set(history["underlying"].unique().to_list())
    known = [u for u in underlyings if u in have]
    proxy = str(params.get("proxy", "BTC"))
    if proxy not in have:
        if not known:
            raise HistoryError(f"no price history for any of {', '.join(underlyings)}")
        counts = history.filter(pl.col("underlying").is_in(known))["underlying"].value_counts()
        proxy = str(counts.sort(["count", "underlying"], descending=[True, False])[0, 0])
    wide = (
        history.filter(pl.col("underlying").is_in([*known, proxy]))
        .pivot("underlying", index="date", values="close", aggregate_function="last")
        .sort("date")
        .upsample("date", every="1d")
        .fill_null(strategy="forward", limit=int(params.get("max_gap_days", 7)))
    )
    logp = {u: np.log(wide[u].to_numpy().astype(np.float64)) for u in wide.columns if u != "date"}
    dates_all: list[dt.date] = wide["date"].to_list()[h:]
    rets = {u: lp[h:] - lp[:-h] for u, lp in logp.items()}
    base = rets[proxy]
    rows = ~np.isnan(base)
    base = base[rows]
    dates = [d for d, k in zip(dates_all, rows.tolist(), strict=True) if k]
    min_overlap = int(params.get("min_overlap_days", 60))
    out = np.empty((base.size, len(underlyings)))
    filled: dict[str, tuple[int, str]] = {}
    for j, u in enumerate(underlyings):
        r = rets[u][rows] if u in rets else np.full(base.size, np.nan)
        missing = np.isnan(r)
        if not missing.any():
            out[:, j] = r
            continue
        own = ~missing
        if own.sum() >= min_overlap:
            x, y = base[own], r[own]
            beta = float(
                np.dot(x - x.mean(), y - y.mean()) / max(np.sum((x - x.mean()) ** 2), 1e-300)
            )
            resid = y - beta * x
            idx = np.flatnonzero(missing)
            out[:, j] = r
            out[idx, j] = beta * base[idx] + resid[idx % resid.size]
            how = f"beta {beta:.3f} x {proxy} + own residuals"
        else:
            mult = float(params.get("missing_vol_multiplier", 1.5))
            out[:, j] = np.where(missing, base * mult, r)
            how = f"{mult:g} x {proxy} (history too short)"
        filled[u] = (int(missing.sum()), how)
        log.warning("hs_es: %d of %d returns of %s filled: %s", missing.sum(), base.size, u, how)
    return JointReturns(dates, out, tuple(underlyings), proxy, base, filled)


def ewma_vol(returns: FloatArray, decay: float) -> FloatArray:
    """EWMA volatility before each return, plus a last row: today's (after the last)."""
    n, m = returns.shape
    var = np.empty((n + 1, m))
    var[0] = np.mean(returns[: min(EWMA_SEED_DAYS, n)] ** 2, axis=0) + 1e-12
    sq = (1.0 - decay) * returns**2
    for t in range(n):
        var[t + 1] = decay * var[t] + sq[t]
    return np.sqrt(var)


@dataclass(frozen=True)
class HistoricalScenarios:
    """Recent (filtered) scenarios first, then the stressed observations (unfiltered)."""

    scenarios: ScenarioSet
    n_recent: int
    dates: list[dt.date]  #: date of each scenario, same order
    joint: JointReturns

    @property
    def n_stress(self) -> int:
        return self.scenarios.n - self.n_recent

    @property
    def stress_dates(self) -> list[dt.date]:
        return self.dates[self.n_recent :]


def historical_scenarios(inputs: MarginInputs, params: Mapping[str, Any]) -> HistoricalScenarios:
    """The recent and stressed scenario sets of the business date (module doc, 1-4)."""
    t = inputs.table
    decay = float(params["ewma_decay"])
    joint = joint_returns(inputs.price_history, t.underlyings, params, inputs.business_date)
    r = joint.returns
    n = r.shape[0]
    if n < int(params.get("min_history_days", 365)):
        raise HistoryError(
            f"only {n} days of {joint.proxy} history up to {inputs.business_date}; "
            f"min_history_days = {params.get('min_history_days', 365)}"
        )
    vol = ewma_vol(r, decay)
    z = r / vol[:-1]
    lookback = int(params.get("lookback_days", 0)) or n
    recent = slice(max(0, n - lookback), n)
    window = int(params.get("stress_lookback_days", 0)) or n
    start = max(0, n - window)
    after = ewma_vol(joint.proxy_returns[:, None], decay)[1:, 0][start:]
    fraction = float(params.get("stress_fraction", 0.1))
    cut = np.quantile(after, max(0.0, 1.0 - fraction), method="lower")
    stress = start + np.flatnonzero(after >= cut)
    beta = float(params.get("vol_beta", 1.0))
    ratio = np.sqrt(decay + (1.0 - decay) * z**2) ** beta  # (n, n_u)
    returns = np.concatenate([z[recent] * vol[-1], r[stress]])
    ratios = np.concatenate([ratio[recent], ratio[stress]])
    moves = np.maximum(np.expm1(returns), MIN_MOVE).T
    sigma = t.sigma[:, None] * ratios.T[t.underlying_code]
    dates = [joint.dates[i] for i in range(recent.start, recent.stop)]
    dates += [joint.dates[i] for i in stress]
    names = tuple(
        [f"recent:{d}" for d in dates[: recent.stop - recent.start]]
        + [f"stress:{d}" for d in dates[recent.stop - recent.start :]]
    )
    horizon = float(params.get("horizon_days", 1))
    return HistoricalScenarios(
        ScenarioSet(names, moves, sigma, horizon), recent.stop - recent.start, dates, joint
    )


def weighted_tail(
    loss: FloatArray, weight: FloatArray, confidence: float
) -> tuple[FloatArray, IntArray, FloatArray]:
    """ES of each row of ``loss`` (accounts x scenarios) whose scenarios have
    probabilities ``weight`` (summing to 1): the mean loss over the worst ``1 -
    confidence`` of probability, the boundary scenario counted in part.

    Returns ES, the tail's scenario indices per row and their probability weights (each
    row's weights sum to ``1 - confidence``). Only the few candidates that can be in the
    tail are sorted: per distinct weight, the ``ceil(mass / w) + 1`` largest losses.
    """
    mass = 1.0 - confidence
    cand: list[IntArray] = []
    for w in np.unique(weight[weight > 0]):
        cols = np.flatnonzero(weight == w)
        # All of them when together they weigh no more than the tail (also keeps mass / w
        # from overflowing for a tiny weight).
        k = cols.size if w * cols.size <= mass else min(cols.size, math.ceil(mass / w) + 1)
        part = np.argpartition(loss[:, cols], cols.size - k, axis=1)[:, cols.size - k :]
        cand.append(cols[part])
    idx = np.sort(np.concatenate(cand, axis=1), axis=1)  # canonical order before sorting
    vals = np.take_along_axis(loss, idx, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    w = weight[idx]
    cum = np.cumsum(w, axis=1)
    tw = np.clip(np.minimum(cum, mass) - (cum - w), 0.0, None)
    es = np.sum(tw * vals, axis=1) / mass
    return es, idx, tw


def _tail_candidates(weightings: list[FloatArray], start: int, stop: int, mass: float) -> int:
    """How many scenarios of the equally weighted group ``[start, stop)`` can be in a
    tail of probability ``mass`` under any of the weightings (one more for the partly
    counted boundary scenario)."""
    k = 0
    size = stop - start
    for weight in weightings:
        w = float(weight[start]) if size else 0.0
        if w > 0:
            k = max(k, size if w * size <= mass else min(size, math.ceil(mass / w) + 1))
    return k


def compute(inputs: MarginInputs, params: Mapping[str, Any]) -> MarginResult:
    t = inputs.table
    pm = inputs.positions
    confidence = float(params["confidence"])
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    hist = historical_scenarios(inputs, params)
    pnl = revalue_usd(t, hist.scenarios)  # (n_instruments, n_scenarios)
    n_r, n_s = hist.n_recent, hist.n_stress
    stress_weight = float(params["stress_weight"]) if n_s else 0.0
    w_recent = np.zeros(n_r + n_s)
    w_recent[:n_r] = 1.0 / n_r
    w_mix = np.concatenate(
        [np.full(n_r, (1.0 - stress_weight) / n_r), np.full(n_s, stress_weight / max(n_s, 1))]
    )

    weightings = [w_recent, w_mix] if stress_weight > 0 else [w_recent]
    mass = 1.0 - confidence
    # A group none of whose scenarios can be in a tail (the stressed days when their
    # weight is zero) is left out of the search.
    groups = [
        (a, b, k)
        for a, b in ([(0, n_r), (n_r, n_r + n_s)] if n_s else [(0, n_r)])
        if (k := _tail_candidates(weightings, a, b, mass)) > 0
    ]
    matrix = pm.matrix
    es, tail_idx, tail_w = tail_kernel.account_tails(
        matrix.indptr.astype(np.int64),
        matrix.indices.astype(np.int64),
        matrix.data.astype(np.float64),
        np.ascontiguousarray(pnl),
        np.array([a for a, _, _ in groups], dtype=np.int64),
        np.array([b for _, b, _ in groups], dtype=np.int64),
        np.array([k for _, _, k in groups], dtype=np.int64),
        np.stack(weightings),
        mass,
    )
    es_recent = np.maximum(es[:, 0], 0.0)
    im = np.maximum(es.max(axis=1), 0.0)
    q = inputs.positions_frame["quantity"].to_numpy().astype(np.float64)
    acc = pm.account_code.astype(np.int64)
    contrib = tail_kernel.euler_contributions(
        acc, pm.instrument_code.astype(np.int64), q, pnl, tail_idx, tail_w, mass
    )
    contrib = np.where(im[acc] > 0, contrib, 0.0)

    mm = float(params["mm_factor"]) * im
    haircuts = {k: float(v) for k, v in params.get("haircuts", {}).items()}
    components = {"expected_shortfall": es_recent, "procyclicality_floor": im - es_recent}
    return usd_pool_result(inputs, haircuts, im, mm, components, contrib)
