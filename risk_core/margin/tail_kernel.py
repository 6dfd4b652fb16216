"""Compiled kernels of historical-simulation ES: one pass per account, no accounts x
scenarios matrix.

:func:`account_tails` forms each account's loss per scenario from its sparse row of the
position matrix (``loss[s] = -sum_j q_j pnl[i_j, s]``, positions in the row's order),
keeps per group of equally weighted scenarios only the candidates that can be in the
tail (a small heap), and measures the tail under up to two weightings: ES is the
probability-weighted mean loss of the worst ``mass = 1 - confidence`` of probability,
the boundary scenario counted in part (Acerbi-Tasche), the same measure as
:func:`risk_core.margin.hs_es.weighted_tail`, the NumPy reference the tests compare it
with (equal to rounding, 1e-12: the kernel sums in sequence, NumPy pairwise). Ties
are ordered canonically: larger loss first, then the lower scenario index.

:func:`euler_contributions` gives each position its probability-weighted mean loss over
its account's tail (they add up to the account's ES).

Accounts run in parallel threads (``numba.prange``); each account's arithmetic is
sequential in a fixed order, so results do not depend on the thread count or on which
other accounts are computed with it (shards give identical bits). Compiled on first use
and cached next to this module (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@numba.njit(cache=True, inline="always")
def _worse(v1: float, i1: int, v2: float, i2: int) -> bool:
    """Whether scenario (v1, i1) ranks below (v2, i2): smaller loss, or equal loss and a
    larger index."""
    return v1 < v2 or (v1 == v2 and i1 > i2)


@numba.njit(cache=True)
def _top_k(loss: FloatArray, start: int, stop: int, k: int, hv: FloatArray, hi: IntArray) -> int:
    """The ``k`` highest-ranked scenarios of ``loss[start:stop]`` into ``hv``/``hi``
    (a min-heap on rank: the root is the lowest kept); returns how many were kept."""
    n = 0
    if k <= 0:  # nothing of this group can be in the tail (e.g. stress weighted zero)
        return n
    for s in range(start, stop):
        v = loss[s]
        if n < k:
            # push, sift up
            c = n
            n += 1
            while c > 0:
                p = (c - 1) // 2
                if _worse(v, s, hv[p], hi[p]):
                    hv[c] = hv[p]
                    hi[c] = hi[p]
                    c = p
                else:
                    break
            hv[c] = v
            hi[c] = s
        elif _worse(hv[0], hi[0], v, s):
            # replace the root, sift down
            c = 0
            while True:
                left = 2 * c + 1
                if left >= n:
                    break
                m = left
                right = left + 1
                if right < n and _worse(hv[right], hi[right], hv[left], hi[left]):
                    m = right
                if _worse(hv[m], hi[m], v, s):
                    hv[c] = hv[m]
                    hi[c] = hi[m]
                    c = m
                else:
                    break
            hv[c] = v
            hi[c] = s
    return n


#: Up to this many candidates are ranked by insertion sort; more (a lightly weighted
#: group that fits in the tail whole, e.g. a thousand stressed days) by two sorts.
INSERTION_MAX = 64


@numba.njit(cache=True)
def _rank_sort(vals: FloatArray, idx: IntArray, n: int) -> None:
    """Sort the first ``n`` entries best first: larger loss, then lower scenario index."""
    if n > INSERTION_MAX:
        by_index = np.argsort(idx[:n])  # scenario indices are distinct
        v = vals[:n][by_index]
        i = idx[:n][by_index]
        best = np.argsort(-v, kind="mergesort")  # stable: ties keep the index order
        vals[:n] = v[best]
        idx[:n] = i[best]
        return
    for a in range(1, n):
        v0 = vals[a]
        i0 = idx[a]
        b = a - 1
        while b >= 0 and _worse(vals[b], idx[b], v0, i0):
            vals[b + 1] = vals[b]
            idx[b + 1] = idx[b]
            b -= 1
        vals[b + 1] = v0
        idx[b + 1] = i0


@numba.njit(cache=True)
def _tail(
    vals: FloatArray,
    idx: IntArray,
    n: int,
    weight: FloatArray,
    mass: float,
    out_idx: IntArray,
    out_w: FloatArray,
) -> float:
    """ES over the ranked candidates ``vals[:n]`` (best first) with scenario weights
    ``weight``; the tail's scenarios and weights go to ``out_idx``/``out_w`` (zero
    weight after the tail)."""
    cum = 0.0
    total = 0.0
    m = 0
    for a in range(n):
        w = weight[idx[a]]
        if w <= 0.0:
            continue
        before = cum
        cum += w
        take = min(cum, mass) - before
        if take <= 0.0:
            break
        out_idx[m] = idx[a]
        out_w[m] = take
        total += take * vals[a]
        m += 1
    for a in range(m, out_idx.size):
        out_idx[a] = 0
        out_w[a] = 0.0
    return total / mass


@numba.njit(parallel=True, cache=True)
def account_tails(
    indptr: IntArray,
    indices: IntArray,
    quantity: FloatArray,
    pnl: FloatArray,
    group_start: IntArray,
    group_stop: IntArray,
    group_k: IntArray,
    weights: FloatArray,
    mass: float,
) -> tuple[FloatArray, IntArray, FloatArray]:
    """ES of every account under each weighting, and each account's tail.

    ``indptr``/``indices``/``quantity``: the CSR position matrix (accounts x
    instruments); ``pnl``: instrument P&L per scenario ``(n_instruments, n_scenarios)``.
    Scenario groups ``[group_start[g], group_stop[g])`` are contiguous; at most
    ``group_k[g]`` of a group can be in any tail. ``weights``: ``(n_weightings,
    n_scenarios)`` probabilities (zero: not in that weighting). Returns ES ``(n_accounts,
    n_weightings)`` and, for the weighting with the largest ES of each account (the
    first on a tie), the tail's scenario indices and probability weights ``(n_accounts,
    sum(group_k))``.

    One parallel region over accounts: many short regions (tiling scenarios for the
    cache) measured slower here, their barriers stall when the machine is busy.
    """
    n_acc = indptr.size - 1
    n_s = pnl.shape[1]
    n_w = weights.shape[0]
    width = 0
    for g in range(group_k.size):
        width += group_k[g]
    es = np.zeros((n_acc, n_w))
    tail_idx = np.zeros((n_acc, width), dtype=np.int64)
    tail_w = np.zeros((n_acc, width))
    for a in numba.prange(n_acc):
        loss = np.zeros(n_s)
        for p in range(indptr[a], indptr[a + 1]):
            row = indices[p]
            q = quantity[p]
            for s in range(n_s):
                loss[s] -= q * pnl[row, s]
        vals = np.empty(width)
        idx = np.empty(width, dtype=np.int64)
        n = 0
        for g in range(group_k.size):
            n += _top_k(loss, group_start[g], group_stop[g], group_k[g], vals[n:], idx[n:])
        _rank_sort(vals, idx, n)
        best = -np.inf
        cand_idx = np.empty(width, dtype=np.int64)
        cand_w = np.empty(width)
        for w in range(n_w):
            value = _tail(vals, idx, n, weights[w], mass, cand_idx, cand_w)
            es[a, w] = value
            if value > best:
                best = value
                tail_idx[a, :] = cand_idx
                tail_w[a, :] = cand_w
    return es, tail_idx, tail_w


@numba.njit(parallel=True, cache=True)
def euler_contributions(
    account: IntArray,
    instrument: IntArray,
    quantity: FloatArray,
    pnl: FloatArray,
    tail_idx: IntArray,
    tail_w: FloatArray,
    mass: float,
) -> FloatArray:
    """Each position's probability-weighted mean loss over its account's tail:
    ``-q sum_t w_t pnl[i, s_t] / mass``, positions in the given order."""
    out = np.zeros(account.size)
    for p in numba.prange(account.size):
        a = account[p]
        row = instrument[p]
        total = 0.0
        for t in range(tail_idx.shape[1]):
            w = tail_w[a, t]
            if w == 0.0:
                break
            total += w * pnl[row, tail_idx[a, t]]
        out[p] = -quantity[p] * total / mass
    return out


def warm_up() -> None:
    """Compile the kernels (or load them from the cache) on a tiny problem: ``make``
    and the container image call it once so that no run pays the compilation."""
    one = np.ones(1, dtype=np.int64)
    pnl = np.ones((1, 2))
    _es, idx, w = account_tails(
        np.array([0, 1], dtype=np.int64),
        np.zeros(1, dtype=np.int64),
        np.ones(1),
        pnl,
        np.zeros(1, dtype=np.int64),
        one * 2,
        one,
        np.full((1, 2), 0.5),
        0.5,
    )
    euler_contributions(
        np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.ones(1), pnl, idx, w, 0.5
    )
