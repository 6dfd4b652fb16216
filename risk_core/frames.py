"""Deterministic aggregation of Polars frames.

Polars' hash group-by sums partial results from several threads, so the last bits of a
float sum can change from one run to the next. Published numbers must be byte-for-byte
reproducible and independent of input row order, so sums go through :func:`group_sum`:
rows are put in a canonical order (the keys, then ``order_by``) and each group is summed
sequentially.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl


def group_sum(
    frame: pl.DataFrame,
    keys: Sequence[str],
    values: Sequence[str],
    order_by: Sequence[str] = (),
) -> pl.DataFrame:
    """Sum ``values`` per ``keys``; the result is sorted by ``keys``.

    ``order_by`` must make the order of rows within a group canonical (unique with the
    keys) for the sums to be independent of the input row order.
    """
    keys, values = list(keys), list(values)
    if frame.height == 0:
        return frame.select(*keys, *values).clear()
    ordered = frame.sort([*keys, *order_by], maintain_order=True)
    starts = np.flatnonzero(ordered.select(pl.struct(keys).is_first_distinct()).to_series())
    out = ordered[starts].select(keys)
    return out.with_columns(
        pl.Series(v, np.add.reduceat(ordered[v].to_numpy().astype(np.float64), starts))
        for v in values
    )
