"""A short summary of a published business date: accounts, initial margin by model,
margin calls and the capital efficiency of portfolio against standard margin."""

from __future__ import annotations

import datetime as dt

import polars as pl
from rich.console import Console
from rich.table import Table

from pipelines.resources import resolved_warehouse_url
from pipelines.warehouse import Warehouse


def summarize(margin_account: pl.DataFrame) -> pl.DataFrame:
    """Per model: accounts, total initial and maintenance margin (USD), margin calls."""
    return (
        margin_account.group_by("model")
        .agg(
            pl.col("account_id").n_unique().alias("accounts"),
            pl.col("initial_margin_usd").sum().alias("initial_margin_usd"),
            pl.col("maintenance_margin_usd").sum().alias("maintenance_margin_usd"),
            pl.col("account_id").filter(pl.col("margin_call")).n_unique().alias("margin_calls"),
        )
        .sort("model")
    )


def print_summary(business_date: dt.date, warehouse_url: str | None = None) -> int:
    warehouse = Warehouse(resolved_warehouse_url(warehouse_url))
    console = Console()
    published = warehouse.has_table("margin_account")
    frame = warehouse.read_table("margin_account", business_date) if published else None
    if frame is None or frame.is_empty():
        console.print(f"nothing published for {business_date}")
        return 1
    table = Table(title=f"End of day {business_date} ({frame['ruleset'][0]})")
    for column in ("model", "accounts", "initial margin (USD)", "maint. margin (USD)", "calls"):
        table.add_column(column, justify="left" if column == "model" else "right")
    per_model = summarize(frame)
    for model, accounts, im, mm, calls in per_model.iter_rows():
        table.add_row(model, f"{accounts:,}", f"{im:,.0f}", f"{mm:,.0f}", f"{calls:,}")
    console.print(table)
    totals = dict(zip(per_model["model"], per_model["initial_margin_usd"], strict=True))
    if totals.get("standard"):
        ratio = totals.get("portfolio", 0.0) / totals["standard"]
        console.print(f"portfolio / standard initial margin: {ratio:.1%}")
    return 0
