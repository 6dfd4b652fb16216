"""The daily backtest of the end of day: yesterday's book against today's marks.

For business date D and horizon h: each account's positions of D - h (from the landing
data of D - h: exactly the book that was margined) are held fixed and revalued at D's
marks; the P&L is compared with the initial margin published for D - h (per model, all
pools in USD). An exceedance is a loss larger than the margin.

Revaluation per position, in USD: options and spot at their mark value of D; futures
and perpetuals by ``quantity * units * (F_D - F_{D-h})`` with ``units`` the contract's
coins at D - h (the same formula holds for inverse contracts in USD). An instrument
without a mark on D is either expired (options settle at intrinsic, futures at D's
index) or no longer quoted: then its forward moves with the index,
``F_D = F_{D-h} * S_D / S_{D-h}``, and an option is valued with Black-76 at its previous
volatility and the shorter expiry. Collateral is not part of the P&L: the test is of the
book's risk.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from numpy.typing import NDArray

from risk_core import outputs
from risk_core.frames import group_sum
from risk_core.market import KIND_OPTION, KIND_SPOT, InstrumentTable
from risk_core.pricing.black76 import price as black76_price

#: A loss must exceed the margin by more than this (USD) to count: float noise on a
#: perfectly hedged book is not an exceedance.
EXCEEDANCE_TOLERANCE_USD = 1e-6


def _mark_value(table: InstrumentTable) -> np.ndarray:
    """USD value per contract from the marks (options, spot); 0 for futures."""
    option = np.where(table.inverse, table.mark_price * table.forward, table.mark_price)
    return np.where(
        table.kind == KIND_OPTION,
        option * table.units,
        np.where(table.kind == KIND_SPOT, table.units * table.forward, 0.0),
    )


def _rows_in(keys: NDArray[np.object_], table: NDArray[np.object_]) -> NDArray[np.int64]:
    """For each of ``keys``, the first row of ``table`` holding it; -1 where none does."""
    lookup = (
        pl.DataFrame({"key": pl.Series(table.tolist(), dtype=pl.String)})
        .with_row_index("row")
        .group_by("key")
        .agg(pl.col("row").min())
    )
    joined = pl.DataFrame({"key": pl.Series(keys.tolist(), dtype=pl.String)}).join(
        lookup, on="key", how="left", maintain_order="left"
    )
    return joined["row"].fill_null(-1).to_numpy().astype(np.int64)


def position_pnl(
    positions: pl.DataFrame, before: InstrumentTable, after: InstrumentTable, elapsed_days: float
) -> np.ndarray:
    """USD P&L of each position of ``positions`` (booked against ``before``) at ``after``."""
    code = before.codes(positions["instrument_id"])
    q = positions["quantity"].to_numpy().astype(np.float64)
    # Each position's instrument in ``after`` (-1: no longer quoted), and the index price
    # of its underlying there (NaN when ``after`` has none: row -1 of the padded array).
    found = _rows_in(before.instrument_id, after.instrument_id)[code]
    listed = found >= 0
    where = np.maximum(found, 0)
    index_row = _rows_in(before.underlying, after.underlying)[code]
    s_after = np.append(after.index, np.nan)[index_row]
    if np.any(~listed & np.isnan(s_after)):
        missing = sorted(set(before.underlying[code][~listed & np.isnan(s_after)].tolist()))
        raise ValueError(f"no index price on the later date for {missing}")
    units = before.units[code]
    kind = before.kind[code]
    t_after = np.maximum(before.t[code] - elapsed_days / 365.0, 0.0)
    expired = ~listed & (before.t[code] > 0) & (t_after <= 0.0)
    # Unquoted but alive: the forward moves with the index (expired: it is the index).
    moved = before.forward[code] * s_after / before.index[code]
    f_after = np.where(listed, after.forward[where], np.where(expired, s_after, moved))
    model = (
        black76_price(
            f_after, before.strike[code], t_after, before.sigma[code], before.is_call[code]
        )
        * units
    )
    value_before = _mark_value(before)[code]
    value_after = np.where(listed, _mark_value(after)[where], model)
    value_after = np.where(kind == KIND_SPOT, units * f_after, value_after)
    delta_one = (kind != KIND_OPTION) & (kind != KIND_SPOT)
    pnl = np.where(
        delta_one,
        units * (f_after - before.forward[code]),
        value_after - value_before,
    )
    return q * pnl


def daily_backtest(
    positions_before: pl.DataFrame,
    margin_before: pl.DataFrame,
    before: InstrumentTable,
    after: InstrumentTable,
    horizon_days: int,
    elapsed_days: float | None = None,
) -> pl.DataFrame:
    """backtest_result rows (without business_date and run_id).

    ``margin_before``: margin_account rows of D - h (account_id, model, initial_margin_usd
    per pool). Accounts with a margin but no positions have a zero P&L.
    """
    pnl = position_pnl(
        positions_before, before, after, horizon_days if elapsed_days is None else elapsed_days
    )
    per_account = group_sum(
        positions_before.select("account_id", "instrument_id").with_columns(
            pl.Series("pnl_usd", pnl)
        ),
        ["account_id"],
        ["pnl_usd"],
        ["instrument_id"],
    )
    margin = group_sum(
        margin_before, ["account_id", "model"], ["initial_margin_usd"], ["pool_currency"]
    ).rename({"initial_margin_usd": "margin_usd"})
    result = (
        margin.join(per_account, on="account_id", how="left")
        .with_columns(
            pl.col("pnl_usd").fill_null(0.0),
            pl.lit(horizon_days, dtype=pl.Int64).alias("horizon_days"),
        )
        .with_columns(
            (-pl.col("pnl_usd") > pl.col("margin_usd") + EXCEEDANCE_TOLERANCE_USD).alias(
                "exceedance"
            )
        )
        .sort("account_id", "model")
    )
    columns = [c for c in outputs.BACKTEST_RESULT.columns if c not in ("business_date", "run_id")]
    return result.select(columns)
