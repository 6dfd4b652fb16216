"""The compiled ES kernels against the NumPy reference ``hs_es.weighted_tail``: the same
ES and tails, contributions that add up, and bits independent of the other accounts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from risk_core.margin import hs_es, tail_kernel


def _book(seed: int, n_acc: int, n_instr: int, n_s: int, per: int = 6):
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_acc), per)
    cols = np.concatenate([rng.choice(n_instr, per, replace=False) for _ in range(n_acc)])
    q = np.round(rng.normal(0, 3, rows.size), 1) + 0.05
    matrix = sp.csr_array((q, (rows, cols)), shape=(n_acc, n_instr))
    matrix.sum_duplicates()
    pnl = rng.standard_t(3, (n_instr, n_s)) * 100.0
    return matrix, pnl


def _weightings(n_r: int, n_s: int, stress: float) -> list[np.ndarray]:
    recent = np.r_[np.full(n_r, 1.0 / n_r), np.zeros(n_s)]
    mix = np.r_[np.full(n_r, (1 - stress) / n_r), np.full(n_s, stress / n_s)]
    return [recent, mix]


def _kernel(matrix: sp.csr_array, pnl: np.ndarray, weightings, n_r: int, confidence: float):
    mass = 1.0 - confidence
    n_s = pnl.shape[1] - n_r
    groups = [(0, n_r), (n_r, n_r + n_s)]
    k = [hs_es._tail_candidates(weightings, a, b, mass) for a, b in groups]
    groups = [g for g, kept in zip(groups, k, strict=True) if kept]  # as hs_es.compute does
    k = [kept for kept in k if kept]
    return tail_kernel.account_tails(
        matrix.indptr.astype(np.int64),
        matrix.indices.astype(np.int64),
        matrix.data.astype(np.float64),
        pnl,
        np.array([a for a, _ in groups], dtype=np.int64),
        np.array([b for _, b in groups], dtype=np.int64),
        np.array(k, dtype=np.int64),
        np.stack(weightings),
        mass,
    )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n_r=st.integers(40, 600),
    n_s=st.integers(1, 120),
    stress=st.floats(0.01, 0.9),
    confidence=st.sampled_from([0.9, 0.95, 0.975, 0.99, 0.995]),
)
def test_kernel_matches_the_numpy_reference(
    seed: int, n_r: int, n_s: int, stress: float, confidence: float
) -> None:
    matrix, pnl = _book(seed, 30, 40, n_r + n_s)
    weightings = _weightings(n_r, n_s, stress)
    es, idx, tw = _kernel(matrix, pnl, weightings, n_r, confidence)
    loss = -(matrix @ pnl)
    mass = 1.0 - confidence
    refs = [hs_es.weighted_tail(loss, w, confidence) for w in weightings]
    for j, (ref_es, _, _) in enumerate(refs):
        np.testing.assert_allclose(es[:, j], ref_es, rtol=1e-12, atol=1e-9)
    # The kept tail is the binding weighting's; its weights sum to the tail mass.
    np.testing.assert_allclose(tw.sum(axis=1), mass, rtol=1e-12)
    binding = np.argmax(es, axis=1)
    for a in range(loss.shape[0]):
        ref_idx, ref_w = refs[binding[a]][1][a], refs[binding[a]][2][a]
        keep = ref_w > 0
        got = {int(i): w for i, w in zip(idx[a], tw[a], strict=True) if w > 0}
        want = {int(i): w for i, w in zip(ref_idx[keep], ref_w[keep], strict=True)}
        assert got.keys() == want.keys()
        for i in got:
            assert got[i] == pytest.approx(want[i], rel=1e-12, abs=1e-15)


def test_contributions_add_up_and_shards_change_no_bit() -> None:
    matrix, pnl = _book(7, 200, 60, 900)
    n_r, confidence = 800, 0.99
    weightings = _weightings(n_r, 100, 0.25)
    es, idx, tw = _kernel(matrix, pnl, weightings, n_r, confidence)
    coo = matrix.tocoo()
    account, instrument, q = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    contrib = tail_kernel.euler_contributions(
        account, instrument, q, pnl, idx, tw, 1.0 - confidence
    )
    per_account = np.bincount(account, weights=contrib, minlength=matrix.shape[0])
    np.testing.assert_allclose(per_account, es.max(axis=1), rtol=1e-9, atol=1e-6)
    # The same accounts in another company (a shard) get the same bits.
    part = matrix[50:120]
    es_part, idx_part, tw_part = _kernel(part, pnl, weightings, n_r, confidence)
    assert np.array_equal(es_part, es[50:120])
    assert np.array_equal(idx_part, idx[50:120]) and np.array_equal(tw_part, tw[50:120])


def test_ties_rank_the_lower_scenario_first() -> None:
    """Equal losses: the tail takes the lower scenario index (a canonical order)."""
    pnl = np.array([[-1.0, -2.0, -2.0, -2.0, 0.0, 1.0, 3.0, -1.0, 0.5, 0.0]])
    matrix = sp.csr_array(np.array([[1.0]]))
    w = [np.full(10, 0.1)]  # tail mass 0.25: 2.5 scenarios, two at loss 2, half of the third
    es, idx, tw = tail_kernel.account_tails(
        matrix.indptr.astype(np.int64),
        matrix.indices.astype(np.int64),
        matrix.data,
        pnl,
        np.array([0]),
        np.array([10]),
        np.array([math.ceil(0.25 / 0.1) + 1]),
        np.stack(w),
        0.25,
    )
    assert es[0, 0] == pytest.approx(2.0)
    assert idx[0, :3].tolist() == [1, 2, 3]
    np.testing.assert_allclose(tw[0, :3], [0.1, 0.1, 0.05])


def test_a_group_that_cannot_be_in_the_tail_is_not_searched() -> None:
    """Stressed days weighted zero: their group keeps no candidate. Interpreted (where
    an index out of bounds raises), the heap of a zero-sized group touches nothing."""
    loss = np.arange(10.0)
    assert tail_kernel._top_k.py_func(loss, 0, 10, 0, np.empty(0), np.empty(0, np.int64)) == 0
    n_r, n_s, confidence = 200, 30, 0.975
    recent = _weightings(n_r, n_s, 0.5)[0]
    assert hs_es._tail_candidates([recent], n_r, n_r + n_s, 1 - confidence) == 0
    matrix, pnl = _book(3, 20, 30, n_r + n_s)
    pnl[:, n_r:] *= 50.0  # stressed days far worse: wrongly counted, they would dominate
    es, _, tw = _kernel(matrix, pnl, [recent], n_r, confidence)
    ref_es, _, _ = hs_es.weighted_tail(-(matrix @ pnl), recent, confidence)
    np.testing.assert_allclose(es[:, 0], ref_es, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(tw.sum(axis=1), 1 - confidence, rtol=1e-12)


def test_a_whole_stress_group_in_the_tail_is_ranked_like_the_reference() -> None:
    """A lightly weighted stress group fits in the tail whole: hundreds of candidates per
    account (the sort for many), with ties, against the reference."""
    n_r, n_s, confidence = 400, 700, 0.95
    weightings = _weightings(n_r, n_s, 0.001)
    assert hs_es._tail_candidates(weightings, n_r, n_r + n_s, 1 - confidence) == n_s
    matrix, pnl = _book(5, 25, 30, n_r + n_s)
    pnl = np.round(pnl, -2)  # many equal losses: the tie order matters
    es, idx, tw = _kernel(matrix, pnl, weightings, n_r, confidence)
    loss = -(matrix @ pnl)
    for j, w in enumerate(weightings):
        ref_es, ref_idx, ref_w = hs_es.weighted_tail(loss, w, confidence)
        np.testing.assert_allclose(es[:, j], ref_es, rtol=1e-12, atol=1e-9)
    binding = np.argmax(es, axis=1)
    for a in range(loss.shape[0]):
        ref_es, ref_idx, ref_w = hs_es.weighted_tail(
            loss[a : a + 1], weightings[binding[a]], confidence
        )
        want = {int(i): w for i, w in zip(ref_idx[0], ref_w[0], strict=True) if w > 0}
        got = {int(i): w for i, w in zip(idx[a], tw[a], strict=True) if w > 0}
        assert got.keys() == want.keys()
