"""Typed Polars schemas of the landing datasets (CONTRACT.md section 1).

One :class:`Dataset` per landing file. ``columns`` lists every column the contract
names, in the contract's order, with the Polars type it is read as; ``key`` is the
set of columns that must be unique; ``required`` the columns that may never be null.
Columns that are empty for some kinds (``expiry``, ``strike``, ``option_type``,
``mark_iv``) are nullable here; their rules per kind are checked by the validation.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

UTC_TIMESTAMP = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class Dataset:
    """A landing dataset: its file base name, columns, key and required columns."""

    name: str
    columns: dict[str, pl.DataType]
    key: tuple[str, ...]
    required: tuple[str, ...]
    reference: bool = False  #: lives in ``<landing>/reference/`` rather than the date folder

    @property
    def schema(self) -> pl.Schema:
        return pl.Schema(self.columns)


INSTRUMENTS = Dataset(
    name="instruments",
    columns={
        "instrument_id": pl.String(),
        "venue": pl.String(),
        "kind": pl.String(),
        "underlying": pl.String(),
        "settlement": pl.String(),
        "contract_size": pl.Float64(),
        "contract_unit": pl.String(),
        "expiry": UTC_TIMESTAMP,
        "strike": pl.Float64(),
        "option_type": pl.String(),
    },
    key=("instrument_id",),
    required=(
        "instrument_id",
        "venue",
        "kind",
        "underlying",
        "settlement",
        "contract_size",
        "contract_unit",
    ),
)

MARKS = Dataset(
    name="marks",
    columns={
        "instrument_id": pl.String(),
        "mark_price": pl.Float64(),
        "mark_iv": pl.Float64(),
        "underlying_price": pl.Float64(),
    },
    key=("instrument_id",),
    required=("instrument_id", "mark_price", "underlying_price"),
)

INDEX_PRICES = Dataset(
    name="index_prices",
    columns={"underlying": pl.String(), "index_price": pl.Float64()},
    key=("underlying",),
    required=("underlying", "index_price"),
)

POSITIONS = Dataset(
    name="positions",
    columns={"account_id": pl.String(), "instrument_id": pl.String(), "quantity": pl.Float64()},
    key=("account_id", "instrument_id"),
    required=("account_id", "instrument_id", "quantity"),
)

COLLATERAL = Dataset(
    name="collateral",
    columns={"account_id": pl.String(), "asset": pl.String(), "amount": pl.Float64()},
    key=("account_id", "asset"),
    required=("account_id", "asset", "amount"),
)

PRICE_HISTORY = Dataset(
    name="price_history",
    columns={"date": pl.Date(), "underlying": pl.String(), "close": pl.Float64()},
    key=("date", "underlying"),
    required=("date", "underlying", "close"),
    reference=True,
)

DAILY_DATASETS: tuple[Dataset, ...] = (INSTRUMENTS, MARKS, INDEX_PRICES, POSITIONS, COLLATERAL)
ALL_DATASETS: tuple[Dataset, ...] = (*DAILY_DATASETS, PRICE_HISTORY)
BY_NAME: dict[str, Dataset] = {d.name: d for d in ALL_DATASETS}
