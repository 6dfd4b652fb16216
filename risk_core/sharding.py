"""Account shards: one business date's margin computation split by account.

Every margin model is per account: an account's requirement, components and position
contributions depend on its own positions and collateral and on the market (the
instrument table, index prices, price history), never on another account. The accounts
can therefore be split into shards that are computed independently (in parallel
processes, or on other machines with a distributed Dagster executor) and the results
concatenated; the published tables are identical, bit for bit, to an unsharded run
(``tests/test_sharding.py`` proves it on generated books).

Shards are contiguous ranges of the sorted account ids, cut so that each holds about the
same work: positions plus one per account (market makers hold hundreds of positions, so
equal account counts would leave one shard with most of the work). Every account and
every position lands in exactly one shard; :func:`shard_inputs` checks it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import polars as pl
from numpy.typing import NDArray

from risk_core.margin.base import MarginInputs, MarginResult
from risk_core.scenarios import PositionMatrix


class ShardingError(ValueError):
    """Shards that do not cover the book exactly once."""


def shard_bounds(work: NDArray[np.int64], shards: int) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` ranges over ``len(work)`` accounts with about equal
    total ``work`` each; at most ``shards`` ranges, none empty."""
    if shards < 1:
        raise ShardingError(f"shards must be at least 1, got {shards}")
    n = int(work.size)
    if n == 0:
        return []
    cumulative = np.cumsum(work, dtype=np.int64)
    targets = cumulative[-1] * np.arange(1, shards) / shards
    cuts = np.searchsorted(cumulative, targets, side="left") + 1
    edges = sorted({0, n, *(int(c) for c in cuts if 0 < c < n)})
    return list(itertools.pairwise(edges))


def shard_inputs(inputs: MarginInputs, shards: int) -> list[MarginInputs]:
    """The inputs of each shard (module doc). One shard returns ``[inputs]`` itself."""
    if shards == 1:
        return [inputs]
    pm = inputs.positions
    work = np.bincount(pm.account_code, minlength=pm.n_accounts).astype(np.int64) + 1
    accounts = pl.Series("account_id", pm.accounts, dtype=pl.String)
    coll_code = (
        inputs.collateral["account_id"]
        .replace_strict(accounts, pl.Series(np.arange(pm.n_accounts)), return_dtype=pl.Int64)
        .to_numpy()
    )
    out = []
    for start, stop in shard_bounds(work, shards):
        rows = np.flatnonzero((pm.account_code >= start) & (pm.account_code < stop))
        matrix = PositionMatrix(
            pm.accounts[start:stop],
            pm.matrix[start:stop],
            pm.account_code[rows] - start,
            pm.instrument_code[rows],
        )
        coll_rows = np.flatnonzero((coll_code >= start) & (coll_code < stop))
        out.append(
            replace(
                inputs,
                positions=matrix,
                positions_frame=inputs.positions_frame[rows],
                collateral=inputs.collateral[coll_rows],
            )
        )
    covered = sum(s.positions_frame.height for s in out)
    accounts_covered = sum(s.positions.n_accounts for s in out)
    if covered != inputs.positions_frame.height or accounts_covered != pm.n_accounts:
        raise ShardingError(
            f"shards cover {covered:,} of {inputs.positions_frame.height:,} positions and "
            f"{accounts_covered:,} of {pm.n_accounts:,} accounts"
        )
    return out


def merge_results(parts: Sequence[Mapping[str, MarginResult]]) -> dict[str, MarginResult]:
    """Every model's result over all shards (the shards' rows, in shard order)."""
    if not parts:
        raise ShardingError("no shard results to merge")
    models = list(parts[0])
    if any(list(p) != models for p in parts):
        raise ShardingError("shards ran different models")
    if len(parts) == 1:
        return dict(parts[0])
    return {
        model: MarginResult(
            pl.concat([p[model].accounts for p in parts]),
            pl.concat([p[model].components for p in parts]),
            pl.concat([p[model].contributions for p in parts]),
        )
        for model in models
    }
