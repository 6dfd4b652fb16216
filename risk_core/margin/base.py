"""What every margin model takes and returns.

A model computes, for every account and margin pool, the equity, initial margin and
maintenance margin in the pool's currency, the breakdown of the initial margin into
named components, and each position's contribution to it. Pools are ``USD`` for
cross-margin, or a settlement coin (``BTC``, ``ETH``) / ``USDC`` for segregated pools.

Invariants every model keeps (tests check them for every model):

* components of an (account, model, pool) add up to its ``initial_margin``;
* contributions of the positions of an (account, model, pool) add up to its
  ``initial_margin`` (each model says which allocation it uses);
* an account with no positions has zero margin; margins are >= 0;
* ``pool_usd`` is the USD value of one unit of the pool currency (1 for USD).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from risk_core.market import InstrumentTable
from risk_core.scenarios import PositionMatrix

ACCOUNT_SCHEMA = pl.Schema(
    {
        "account_id": pl.String(),
        "pool_currency": pl.String(),
        "equity": pl.Float64(),
        "initial_margin": pl.Float64(),
        "maintenance_margin": pl.Float64(),
        "pool_usd": pl.Float64(),
    }
)
COMPONENT_SCHEMA = pl.Schema(
    {
        "account_id": pl.String(),
        "pool_currency": pl.String(),
        "component": pl.String(),
        "amount": pl.Float64(),
    }
)
CONTRIBUTION_SCHEMA = pl.Schema(
    {
        "account_id": pl.String(),
        "instrument_id": pl.String(),
        "pool_currency": pl.String(),
        "amount": pl.Float64(),
    }
)


@dataclass(frozen=True)
class MarginInputs:
    """Everything a model may use for one business date (nothing dated after it)."""

    business_date: dt.date
    table: InstrumentTable
    #: rows: every account with a position or collateral, sorted; columns: instruments
    positions: PositionMatrix
    #: account_id, instrument_id, quantity (signed contracts), sorted by account, instrument
    positions_frame: pl.DataFrame
    #: account_id, asset, amount (units of the asset), sorted
    collateral: pl.DataFrame
    #: asset or underlying -> USD index price
    index_prices: Mapping[str, float]
    #: date, underlying, close; only dates <= business_date
    price_history: pl.DataFrame


@dataclass(frozen=True)
class MarginResult:
    """One model's output, amounts in each row's pool currency.

    ``accounts`` has ACCOUNT_SCHEMA (one row per account and pool, every account of
    ``inputs.positions.accounts`` at least once), ``components`` COMPONENT_SCHEMA,
    ``contributions`` CONTRIBUTION_SCHEMA (one row per position in the pool).
    """

    accounts: pl.DataFrame
    components: pl.DataFrame
    contributions: pl.DataFrame


MarginModel = Callable[[MarginInputs, Mapping[str, Any]], MarginResult]
