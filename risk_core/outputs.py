"""Polars schemas of the warehouse tables (CONTRACT.md section 3).

The single source of the output columns: the pipeline builds frames with exactly these
columns, the warehouse maps them to SQL types, and ``sql/ddl/`` states the same tables
in plain SQL (a test keeps the two in agreement). Money is USD unless the column says
otherwise; amounts in ``pool_currency`` are in the pool's coin or USD.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

UTC_TIMESTAMP = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class OutputTable:
    """A warehouse table: its columns, primary key and how a business date is replaced."""

    name: str
    columns: dict[str, pl.DataType]
    key: tuple[str, ...]
    #: column holding the business date the rows belong to (replace-by-date key);
    #: ``None`` for append-only tables (``pipeline_run``).
    date_column: str | None = "business_date"

    @property
    def schema(self) -> pl.Schema:
        return pl.Schema(self.columns)

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.schema)


F64 = pl.Float64()
STR = pl.String()
DATE = pl.Date()
BOOL = pl.Boolean()
I64 = pl.Int64()

MARGIN_ACCOUNT = OutputTable(
    "margin_account",
    {
        "business_date": DATE,
        "run_id": STR,
        "account_id": STR,
        "model": STR,
        "pool_currency": STR,
        "ruleset": STR,
        "ruleset_sha256": STR,
        "equity": F64,
        "initial_margin": F64,
        "maintenance_margin": F64,
        "equity_usd": F64,
        "initial_margin_usd": F64,
        "maintenance_margin_usd": F64,
        "excess_usd": F64,
        "margin_call": BOOL,
    },
    key=("business_date", "account_id", "model", "pool_currency"),
)

MARGIN_COMPONENT = OutputTable(
    "margin_component",
    {
        "business_date": DATE,
        "run_id": STR,
        "account_id": STR,
        "model": STR,
        "pool_currency": STR,
        "component": STR,
        "amount": F64,
    },
    key=("business_date", "account_id", "model", "pool_currency", "component"),
)

POSITION_RISK = OutputTable(
    "position_risk",
    {
        "business_date": DATE,
        "run_id": STR,
        "account_id": STR,
        "instrument_id": STR,
        "quantity": F64,
        "underlying": STR,
        "kind": STR,
        "settlement": STR,
        "expiry": UTC_TIMESTAMP,
        "mark_price": F64,
        "mark_iv": F64,
        "mark_iv_solved": BOOL,
        "market_value_usd": F64,
        "delta": F64,
        "delta_usd": F64,
        "gamma": F64,
        "vega_usd": F64,
        "theta_usd": F64,
        "margin_contribution_usd": F64,
    },
    key=("business_date", "account_id", "instrument_id"),
)

GREEKS_ACCOUNT = OutputTable(
    "greeks_account",
    {
        "business_date": DATE,
        "run_id": STR,
        "account_id": STR,
        "underlying": STR,
        "delta": F64,
        "delta_usd": F64,
        "gamma": F64,
        "vega_usd": F64,
        "theta_usd": F64,
    },
    key=("business_date", "account_id", "underlying"),
)

BACKTEST_RESULT = OutputTable(
    "backtest_result",
    {
        "business_date": DATE,
        "run_id": STR,
        "account_id": STR,
        "model": STR,
        "horizon_days": I64,
        "margin_usd": F64,
        "pnl_usd": F64,
        "exceedance": BOOL,
    },
    key=("business_date", "account_id", "model", "horizon_days"),
)

BACKTEST_SUMMARY = OutputTable(
    "backtest_summary",
    {
        "business_date": DATE,
        "run_id": STR,
        "as_of_date": DATE,
        "model": STR,
        "window_start": DATE,
        "window_end": DATE,
        "observations": I64,
        "exceedances": I64,
        "expected_exceedances": F64,
        "confidence": F64,
        "kupiec_pvalue": F64,
        "christoffersen_pvalue": F64,
        "traffic_light": STR,
        "peak_to_trough": F64,
        "max_increase_5d": F64,
        "max_increase_30d": F64,
    },
    key=("business_date", "model", "window_start", "window_end", "confidence"),
)

DATA_QUALITY = OutputTable(
    "data_quality",
    {
        "business_date": DATE,
        "run_id": STR,
        "dataset": STR,
        "check": STR,
        "severity": STR,
        "success": BOOL,
        "failed_rows": I64,
        "detail": STR,
    },
    key=("business_date", "dataset", "check"),
)

PIPELINE_RUN = OutputTable(
    "pipeline_run",
    {
        "run_id": STR,
        "business_date": DATE,
        "started_at": UTC_TIMESTAMP,
        "finished_at": UTC_TIMESTAMP,
        "status": STR,
        "code_version": STR,
        "ruleset": STR,
        "ruleset_sha256": STR,
        "inputs_sha256": STR,
        "landing_dir": STR,
        "message": STR,
    },
    key=("run_id",),
    date_column=None,
)

#: Tables replaced whole for a business date, in the order they are written.
DATE_TABLES: tuple[OutputTable, ...] = (
    MARGIN_ACCOUNT,
    MARGIN_COMPONENT,
    POSITION_RISK,
    GREEKS_ACCOUNT,
    BACKTEST_RESULT,
    BACKTEST_SUMMARY,
    DATA_QUALITY,
)
ALL_TABLES: tuple[OutputTable, ...] = (*DATE_TABLES, PIPELINE_RUN)
BY_NAME: dict[str, OutputTable] = {t.name: t for t in ALL_TABLES}
