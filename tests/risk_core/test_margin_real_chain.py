"""A book over a whole real Deribit chain (BTC and ETH, 2026-01-01): every model of both
rulesets computes margins without error and the component and contribution sums hold."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from risk_core import eod
from risk_core.landing.reader import LandingData
from risk_core.landing.schemas import (
    COLLATERAL,
    INDEX_PRICES,
    INSTRUMENTS,
    MARKS,
    POSITIONS,
    PRICE_HISTORY,
)
from risk_core.ruleset import load_ruleset

SNAPSHOT = "deribit_options_snapshot_20260101T091835Z.csv"


def _chain_landing(path: Path, prices: Path) -> LandingData:
    raw = pl.read_csv(path, infer_schema_length=0)
    date = dt.date(2026, 1, 1)
    opts = raw.select(
        pl.col("instrument_name").alias("instrument_id"),
        pl.lit("deribit").alias("venue"),
        pl.lit("option").alias("kind"),
        pl.col("currency").alias("underlying"),
        pl.lit("inverse").alias("settlement"),
        pl.lit(1.0).alias("contract_size"),
        pl.lit("base").alias("contract_unit"),
        pl.col("expiry_datetime").str.to_datetime(time_zone="UTC", time_unit="us").alias("expiry"),
        pl.col("strike").cast(pl.Float64),
        pl.when(pl.col("option_type") == "call")
        .then(pl.lit("C"))
        .otherwise(pl.lit("P"))
        .alias("option_type"),
    ).cast(INSTRUMENTS.columns)  # type: ignore[arg-type]
    # The snapshot is taken at 09:18 UTC; the business date's 00:00 UTC snapshot keeps
    # every expiry after it (the 1 JAN 08:00 expiry would be expired at 09:18).
    marks = raw.select(
        pl.col("instrument_name").alias("instrument_id"),
        pl.col("mark_price").cast(pl.Float64),
        pl.col("implied_volatility").cast(pl.Float64).alias("mark_iv"),
        pl.col("futures_price").cast(pl.Float64).alias("underlying_price"),
    )
    index = (
        raw.group_by("currency")
        .agg(pl.col("index_price").cast(pl.Float64).first())
        .rename({"currency": "underlying", "index_price": "index_price"})
        .sort("underlying")
    )
    ids = opts["instrument_id"].to_list()
    rng = np.random.default_rng(0)
    positions = pl.DataFrame(
        {
            "account_id": [f"A{i % 25:02d}" for i in range(len(ids))],
            "instrument_id": ids,
            "quantity": np.round(rng.normal(0.0, 5.0, len(ids)), 1) + 0.1,
        },
        schema=POSITIONS.schema,
    )
    collateral = pl.DataFrame(
        {
            "account_id": [f"A{i:02d}" for i in range(25)],
            "asset": ["BTC"] * 25,
            "amount": [50.0] * 25,
        },
        schema=COLLATERAL.schema,
    )
    history = pl.concat(
        [
            pl.read_csv(prices / f"{u}-USD.csv").select(
                pl.col("date").str.to_date(),
                pl.lit(u).alias("underlying"),
                pl.col("value").alias("close"),
            )
            for u in ("BTC", "ETH")
        ]
    )
    return LandingData(
        date,
        opts,
        marks.cast(MARKS.columns),
        index.cast(INDEX_PRICES.columns),  # type: ignore[arg-type]
        positions,
        collateral,
        history.cast(PRICE_HISTORY.columns),
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("ruleset", ["cross-margin", "deribit-spm"])
def test_whole_chain_book(shared_data: Path, ruleset: str) -> None:
    data = _chain_landing(shared_data / "options" / SNAPSHOT, shared_data / "prices")
    live = data.instruments["expiry"] > dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    data = LandingData(
        data.business_date,
        data.instruments.filter(live),
        data.marks,
        data.index_prices,
        data.positions.filter(
            pl.col("instrument_id").is_in(data.instruments.filter(live)["instrument_id"].implode())
        ),
        data.collateral,
        data.price_history,
    )
    assert data.positions.height > 1_000
    rules = load_ruleset(ruleset)
    inputs = eod.margin_inputs(data, eod.instrument_table(data))
    tables = eod.margin_tables(eod.run_models(inputs, rules), rules)
    acc = tables.margin_account
    assert acc.height > 0 and (acc["initial_margin"] > 0).all()
    assert np.isfinite(acc["initial_margin_usd"].to_numpy()).all()
    sums = tables.margin_component.group_by("account_id", "model", "pool_currency").agg(
        pl.col("amount").sum()
    )
    joined = acc.join(sums, on=["account_id", "model", "pool_currency"])
    assert (
        (joined["amount"] - joined["initial_margin"]).abs() <= 1e-9 * (1 + joined["initial_margin"])
    ).all()
    im = (
        acc.filter(pl.col("model") == "portfolio")
        .group_by("account_id")
        .agg(pl.col("initial_margin_usd").sum())
        .join(
            tables.contribution_usd.group_by("account_id").agg(
                pl.col("margin_contribution_usd").sum()
            ),
            on="account_id",
        )
    )
    assert (
        (im["initial_margin_usd"] - im["margin_contribution_usd"]).abs()
        <= 1e-6 * (1 + im["initial_margin_usd"])
    ).all()
