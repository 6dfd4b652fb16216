"""Margin pools and their equity.

Two pooling modes:

* ``usd``: one USD pool per account (cross-margin). Equity = collateral valued at the
  index after the ruleset's haircut, plus the market value of option and spot positions
  (futures and perpetual P&L is already settled into collateral).
* ``settlement``: segregated pools per settlement currency, Deribit style. Inverse
  contracts belong to their coin's pool (amounts in coin); linear contracts to the
  ``USDC`` pool (amounts in USD); every collateral asset funds the pool of its own name.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl
from numpy.typing import NDArray

from risk_core.conventions import USD_LIKE
from risk_core.frames import group_sum
from risk_core.margin.base import (
    ACCOUNT_SCHEMA,
    COMPONENT_SCHEMA,
    CONTRIBUTION_SCHEMA,
    MarginInputs,
    MarginResult,
)
from risk_core.market import KIND_SPOT

LINEAR_POOL = "USDC"


def position_value_usd(inputs: MarginInputs) -> NDArray[np.float64]:
    """Market value in USD per contract of every instrument (mark-based for options)."""
    t = inputs.table
    option = np.where(t.inverse, t.mark_price * t.forward, t.mark_price) * t.units
    spot = t.units * t.forward
    return np.where(t.is_option, option, np.where(t.kind == KIND_SPOT, spot, 0.0))


def instrument_pool(inputs: MarginInputs, mode: str) -> NDArray[np.object_]:
    """The pool currency of every instrument."""
    t = inputs.table
    if mode == "usd":
        return np.full(len(t), "USD", dtype=object)
    return np.where(t.inverse, t.underlying, LINEAR_POOL).astype(object)


def pool_usd(pool: str, index_prices: Mapping[str, float]) -> float:
    """USD value of one unit of the pool currency."""
    if pool == "USD":
        return 1.0
    if pool in index_prices:
        return float(index_prices[pool])
    if pool in USD_LIKE:
        return 1.0
    raise KeyError(f"no index price for pool currency {pool}")


def collateral_value(
    inputs: MarginInputs, mode: str, haircuts: Mapping[str, float] | None = None
) -> pl.DataFrame:
    """account_id, pool_currency, equity (collateral part, in pool currency)."""
    coll = inputs.collateral
    px = pl.col("asset").replace_strict(dict(inputs.index_prices), return_dtype=pl.Float64)
    cut = pl.col("asset").replace_strict(dict(haircuts or {}), default=0.0, return_dtype=pl.Float64)
    if mode == "usd":
        value = coll.select(
            "account_id",
            pl.lit("USD").alias("pool_currency"),
            (pl.col("amount") * px * (1.0 - cut)).alias("equity"),
        )
    else:
        usd_like = pl.col("asset").is_in(list(USD_LIKE))
        value = coll.select(
            "account_id",
            pl.when(usd_like)
            .then(pl.lit(LINEAR_POOL))
            .otherwise(pl.col("asset"))
            .alias("pool_currency"),
            pl.when(usd_like)
            .then(pl.col("amount") * px)
            .otherwise(pl.col("amount"))
            .alias("equity"),
        )
    return group_sum(
        value.with_columns(coll["asset"]), ["account_id", "pool_currency"], ["equity"], ["asset"]
    ).select("account_id", "pool_currency", "equity")


def pool_equity(
    inputs: MarginInputs, mode: str, haircuts: Mapping[str, float] | None = None
) -> pl.DataFrame:
    """Equity per account and pool: collateral plus position market values."""
    value_usd = position_value_usd(inputs)
    pools = instrument_pool(inputs, mode)
    pm = inputs.positions
    q = inputs.positions_frame["quantity"].to_numpy()
    code = pm.instrument_code
    pos_pool = pools[code]
    value = value_usd[code] * q
    if mode != "usd":
        coin = inputs.table.inverse[code]
        value = np.where(coin, value / inputs.table.forward[code], value)
    positions = pl.DataFrame(
        {
            "account_id": inputs.positions_frame["account_id"],
            "pool_currency": pos_pool.astype(str),
            "equity": value,
            "item": inputs.positions_frame["instrument_id"],
        }
    )
    collateral = collateral_value(inputs, mode, haircuts).with_columns(
        pl.lit("collateral").alias("item")
    )
    return group_sum(
        pl.concat([collateral, positions]), ["account_id", "pool_currency"], ["equity"], ["item"]
    ).select("account_id", "pool_currency", "equity")


def usd_pool_result(
    inputs: MarginInputs,
    haircuts: Mapping[str, float],
    initial_margin: NDArray[np.float64],
    maintenance_margin: NDArray[np.float64],
    components: Mapping[str, NDArray[np.float64]],
    contributions: NDArray[np.float64],
) -> MarginResult:
    """The MarginResult of a single-USD-pool model: one row per account (in the
    position matrix's order), its named components and one contribution per position."""
    accounts = list(inputs.positions.accounts)
    equity = pool_equity(inputs, "usd", haircuts)
    eq = dict(zip(equity["account_id"], equity["equity"], strict=True))
    names = list(components)
    frame = inputs.positions_frame
    return MarginResult(
        pl.DataFrame(
            {
                "account_id": accounts,
                "pool_currency": "USD",
                "equity": [float(eq.get(a, 0.0)) for a in accounts],
                "initial_margin": initial_margin,
                "maintenance_margin": maintenance_margin,
                "pool_usd": 1.0,
            },
            schema=ACCOUNT_SCHEMA,
        ),
        pl.DataFrame(
            {
                "account_id": np.repeat(np.array(accounts, dtype=object), len(names)).tolist(),
                "pool_currency": "USD",
                "component": names * len(accounts),
                "amount": np.stack([components[n] for n in names], axis=1).ravel(),
            },
            schema=COMPONENT_SCHEMA,
        ),
        pl.DataFrame(
            {
                "account_id": frame["account_id"],
                "instrument_id": frame["instrument_id"],
                "pool_currency": "USD",
                "amount": contributions,
            },
            schema=CONTRIBUTION_SCHEMA,
        ),
    )
