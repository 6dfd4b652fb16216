"""One business date's computation, from landing frames to warehouse frames.

Thin orchestration of the pure pieces, so that the Dagster assets, the benchmarks and
the tests run exactly the same code: build the instrument table, the position matrix
and the model inputs; compute position Greeks; run every model of the ruleset; shape
the results into the tables of :mod:`risk_core.outputs` (without ``run_id`` and
``business_date``, which the publisher adds).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from risk_core.frames import group_sum
from risk_core.landing.reader import LandingData
from risk_core.margin.base import MarginInputs, MarginResult
from risk_core.margin.registry import get_method
from risk_core.market import InstrumentTable, build_instrument_table
from risk_core.ruleset import Ruleset
from risk_core.scenarios import PositionMatrix

PORTFOLIO_MODEL = "portfolio"


def instrument_table(data: LandingData) -> InstrumentTable:
    return build_instrument_table(
        data.instruments, data.marks, data.index_prices, data.business_date
    )


def margin_inputs(data: LandingData, table: InstrumentTable) -> MarginInputs:
    """Model inputs; accounts are every account with a position or collateral."""
    positions = data.positions.sort("account_id", "instrument_id")
    collateral = data.collateral.sort("account_id", "asset")
    accounts = sorted(set(collateral["account_id"].to_list()) | set(positions["account_id"]))
    return MarginInputs(
        business_date=data.business_date,
        table=table,
        positions=PositionMatrix.from_positions(positions, table, accounts),
        positions_frame=positions,
        collateral=collateral,
        index_prices=dict(
            zip(data.index_prices["underlying"], data.index_prices["index_price"], strict=True)
        ),
        price_history=data.price_history.filter(pl.col("date") <= data.business_date),
    )


def position_greeks(inputs: MarginInputs) -> pl.DataFrame:
    """position_risk without its margin contribution: one row per position."""
    table = inputs.table
    g = table.unit_greeks()
    code = inputs.positions.instrument_code
    quantity = inputs.positions_frame["quantity"].to_numpy().astype(np.float64)
    frame = table.frame
    mark_value_usd = np.where(
        table.is_option,
        np.where(table.inverse, table.mark_price * table.forward, table.mark_price) * table.units,
        g.price,
    )
    return pl.DataFrame(
        {
            "account_id": inputs.positions_frame["account_id"],
            "instrument_id": inputs.positions_frame["instrument_id"],
            "quantity": quantity,
            "underlying": frame["underlying"].gather(code),
            "kind": frame["kind"].gather(code),
            "settlement": frame["settlement"].gather(code),
            "expiry": frame["expiry"].gather(code),
            "mark_price": table.mark_price[code],
            "mark_iv": frame["mark_iv"].gather(code),
            "mark_iv_solved": table.iv_solved[code],
            "market_value_usd": mark_value_usd[code] * quantity,
            "delta": g.delta[code] * quantity,
            "delta_usd": g.delta[code] * quantity * table.index[code],
            "gamma": g.gamma[code] * quantity,
            "vega_usd": g.vega[code] * quantity,
            "theta_usd": g.theta[code] * quantity,
        }
    )


def greeks_account(position_risk: pl.DataFrame) -> pl.DataFrame:
    """Sums of position Greeks per account and underlying."""
    return group_sum(
        position_risk,
        ["account_id", "underlying"],
        ["delta", "delta_usd", "gamma", "vega_usd", "theta_usd"],
        ["instrument_id"],
    )


def run_models(inputs: MarginInputs, ruleset: Ruleset) -> dict[str, MarginResult]:
    """Every model of the ruleset, by model name (``portfolio``, ``standard``, ...)."""
    return {
        name: get_method(str(params["method"]))(inputs, params)
        for name, params in sorted(ruleset.models.items())
    }


@dataclass(frozen=True)
class MarginTables:
    margin_account: pl.DataFrame
    margin_component: pl.DataFrame
    #: account_id, instrument_id, margin_contribution_usd (of the portfolio model)
    contribution_usd: pl.DataFrame


def margin_tables(results: dict[str, MarginResult], ruleset: Ruleset) -> MarginTables:
    """margin_account and margin_component rows of every model, and the portfolio
    model's contributions in USD."""
    accounts = []
    components = []
    for model, result in results.items():
        accounts.append(result.accounts.with_columns(pl.lit(model).alias("model")))
        components.append(result.components.with_columns(pl.lit(model).alias("model")))
    account = (
        pl.concat(accounts)
        .with_columns(
            pl.lit(ruleset.label).alias("ruleset"),
            pl.lit(ruleset.sha256).alias("ruleset_sha256"),
            (pl.col("equity") * pl.col("pool_usd")).alias("equity_usd"),
            (pl.col("initial_margin") * pl.col("pool_usd")).alias("initial_margin_usd"),
            (pl.col("maintenance_margin") * pl.col("pool_usd")).alias("maintenance_margin_usd"),
        )
        .with_columns(
            (pl.col("equity_usd") - pl.col("initial_margin_usd")).alias("excess_usd"),
            (pl.col("equity_usd") < pl.col("maintenance_margin_usd")).alias("margin_call"),
        )
        .sort("account_id", "model", "pool_currency")
    )
    component = pl.concat(components).sort("account_id", "model", "pool_currency", "component")
    portfolio = results[PORTFOLIO_MODEL]
    pool_usd = portfolio.accounts.select("account_id", "pool_currency", "pool_usd")
    contribution = group_sum(
        portfolio.contributions.join(
            pool_usd, on=["account_id", "pool_currency"], how="left"
        ).with_columns((pl.col("amount") * pl.col("pool_usd")).alias("margin_contribution_usd")),
        ["account_id", "instrument_id"],
        ["margin_contribution_usd"],
        ["pool_currency"],
    )
    return MarginTables(account, component, contribution)


def position_risk(greeks: pl.DataFrame, contribution_usd: pl.DataFrame) -> pl.DataFrame:
    """position_risk rows: Greeks and the portfolio margin contribution of each position."""
    joined = greeks.join(
        contribution_usd, on=["account_id", "instrument_id"], how="left", maintain_order="left"
    )
    return joined.with_columns(pl.col("margin_contribution_usd").fill_null(0.0))


def margin_frames(tables: MarginTables, greeks: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The margin and risk tables of a date as the warehouse takes them (unstamped)."""
    risk = position_risk(greeks, tables.contribution_usd)
    return {
        "margin_account": tables.margin_account,
        "margin_component": tables.margin_component,
        "position_risk": risk,
        "greeks_account": greeks_account(risk),
    }


def stamp(
    frame: pl.DataFrame, business_date: dt.date, run_id: str, columns: list[str]
) -> pl.DataFrame:
    """Add business_date and run_id, and order the columns as the warehouse table."""
    return frame.with_columns(
        pl.lit(business_date).alias("business_date"), pl.lit(run_id).alias("run_id")
    ).select(columns)
