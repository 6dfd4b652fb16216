"""The ``standard`` per-position baseline (METHODOLOGY.md section 8): no offsets.

Per contract, with ``S`` the index, ``mark`` the option's USD premium per unit of
underlying and ``OTM`` its out-of-the-money amount against the index:

* short option: IM = max(im_otm_rate * S - OTM, im_min_rate * S) + mark;
  MM = max(mm_rate * S, mm_rate * mark) + mark + mm_index_rate * S
  (reproduces the published short put: K 18,500, S 20,250, mark 290 -> MM 938, IM 2,315);
* long option: 0 (the premium is paid and sits in equity);
* future, perpetual and short spot: IM = future_im_rate, MM = future_mm_rate times the
  notional; long spot: 0.

Amounts are converted to the pool of each position (``pool = "usd"`` or
``"settlement"``, see :mod:`risk_core.margin.pools`). Each position's contribution is its
own requirement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from risk_core.frames import group_sum
from risk_core.margin.base import (
    ACCOUNT_SCHEMA,
    COMPONENT_SCHEMA,
    CONTRIBUTION_SCHEMA,
    MarginInputs,
    MarginResult,
)
from risk_core.margin.pools import instrument_pool, pool_equity, pool_usd
from risk_core.market import KIND_SPOT

FloatArray = NDArray[np.float64]


def option_requirements(
    index: FloatArray,
    strike: FloatArray,
    is_call: NDArray[np.bool_],
    mark_usd: FloatArray,
    params: Mapping[str, Any],
) -> tuple[FloatArray, FloatArray]:
    """(IM, MM) in USD per unit of underlying of a SHORT option."""
    otm = np.where(is_call, np.maximum(strike - index, 0.0), np.maximum(index - strike, 0.0))
    im = np.maximum(params["im_otm_rate"] * index - otm, params["im_min_rate"] * index) + mark_usd
    mm = (
        np.maximum(params["mm_rate"] * index, params["mm_rate"] * mark_usd)
        + mark_usd
        + params["mm_index_rate"] * index
    )
    return im, mm


def compute(inputs: MarginInputs, params: Mapping[str, Any]) -> MarginResult:
    t = inputs.table
    mode = str(params.get("pool", "usd"))
    frame = inputs.positions_frame
    code = inputs.positions.instrument_code
    q = frame["quantity"].to_numpy().astype(np.float64)
    units = t.units[code] * np.abs(q)
    option = t.is_option[code]
    short = q < 0
    mark_usd = np.where(t.inverse, t.mark_price * t.forward, t.mark_price)[code]
    im_opt, mm_opt = option_requirements(
        t.index[code], t.strike[code], t.is_call[code], mark_usd, params
    )
    notional = units * t.forward[code]
    delta_one_charged = ~option & ((t.kind[code] != KIND_SPOT) | short)
    im = np.where(option, np.where(short, im_opt * units, 0.0), 0.0)
    mm = np.where(option, np.where(short, mm_opt * units, 0.0), 0.0)
    im = np.where(delta_one_charged, params["future_im_rate"] * notional, im)
    mm = np.where(delta_one_charged, params["future_mm_rate"] * notional, mm)
    component = np.where(
        option, np.where(short, "short_option_margin", "long_option_margin"), "delta_one_margin"
    )

    # pool and its USD rate per instrument (thousands), then per position by code
    instrument_pools = instrument_pool(inputs, mode).astype(str)
    instrument_fx = np.array([pool_usd(p, inputs.index_prices) for p in instrument_pools])
    fx = instrument_fx[code]
    per_position = pl.DataFrame(
        {
            "account_id": frame["account_id"],
            "instrument_id": frame["instrument_id"],
            "pool_currency": pl.Series(instrument_pools, dtype=pl.String).gather(code),
            "component": component,
            "im": im / np.where(fx > 0, fx, 1.0),
            "mm": mm / np.where(fx > 0, fx, 1.0),
        }
    )
    equity = pool_equity(inputs, mode)
    totals = group_sum(
        per_position, ["account_id", "pool_currency"], ["im", "mm"], ["instrument_id"]
    ).rename({"im": "initial_margin", "mm": "maintenance_margin"})
    accounts = equity.join(totals, on=["account_id", "pool_currency"], how="full", coalesce=True)
    accounts = _complete(accounts, inputs, mode)
    components = group_sum(
        per_position, ["account_id", "pool_currency", "component"], ["im"], ["instrument_id"]
    ).rename({"im": "amount"})
    contributions = per_position.select(
        "account_id", "instrument_id", "pool_currency", pl.col("im").alias("amount")
    )
    return MarginResult(
        accounts.select(ACCOUNT_SCHEMA.names()),
        components.select(COMPONENT_SCHEMA.names()),
        contributions.select(CONTRIBUTION_SCHEMA.names()),
    )


def _complete(accounts: pl.DataFrame, inputs: MarginInputs, mode: str) -> pl.DataFrame:
    """Every account at least once, nulls as zero, the pool's USD rate."""
    everyone = pl.DataFrame({"account_id": list(inputs.positions.accounts)})
    have = accounts.select("account_id").unique()
    missing = everyone.join(have, on="account_id", how="anti").with_columns(
        pl.lit("USD").alias("pool_currency")
    )
    out = pl.concat([accounts, missing], how="diagonal").with_columns(
        pl.col("equity", "initial_margin", "maintenance_margin").fill_null(0.0)
    )
    rates = {p: pool_usd(p, inputs.index_prices) for p in out["pool_currency"].unique().to_list()}
    return out.with_columns(
        pl.col("pool_currency").replace_strict(rates, return_dtype=pl.Float64).alias("pool_usd")
    ).sort("account_id", "pool_currency")
