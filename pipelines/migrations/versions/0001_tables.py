"""The warehouse tables of CONTRACT.md section 3 (baseline).

A frozen copy of sql/ddl at the time of this revision: later schema changes are new
revisions, never edits of this one.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = [
    """
    create table if not exists margin_account (
        business_date date not null,
        run_id text,
        account_id text not null,
        model text not null,
        pool_currency text not null,
        ruleset text,
        ruleset_sha256 text,
        equity double precision,  -- pool currency
        initial_margin double precision,  -- pool currency
        maintenance_margin double precision,  -- pool currency
        equity_usd double precision,  -- USD
        initial_margin_usd double precision,  -- USD
        maintenance_margin_usd double precision,  -- USD
        excess_usd double precision,  -- USD
        margin_call boolean,
        primary key (business_date, account_id, model, pool_currency)
    );
    """,
    """
    create table if not exists margin_component (
        business_date date not null,
        run_id text,
        account_id text not null,
        model text not null,
        pool_currency text not null,
        component text not null,
        amount double precision,  -- pool currency
        primary key (business_date, account_id, model, pool_currency, component)
    );
    """,
    """
    create table if not exists position_risk (
        business_date date not null,
        run_id text,
        account_id text not null,
        instrument_id text not null,
        quantity double precision,  -- contracts, signed (> 0 long)
        underlying text,
        kind text,
        settlement text,
        expiry timestamp with time zone,  -- UTC; null for perpetual and spot
        mark_price double precision,  -- coin for inverse options, else USD
        mark_iv double precision,  -- decimal volatility (0.65 means 65 percent)
        mark_iv_solved boolean,
        market_value_usd double precision,  -- USD
        delta double precision,  -- underlying units
        delta_usd double precision,  -- USD
        gamma double precision,  -- per USD of underlying price
        vega_usd double precision,  -- USD per volatility point (0.01)
        theta_usd double precision,  -- USD per calendar day
        margin_contribution_usd double precision,  -- USD
        primary key (business_date, account_id, instrument_id)
    );
    """,
    """
    create table if not exists greeks_account (
        business_date date not null,
        run_id text,
        account_id text not null,
        underlying text not null,
        delta double precision,  -- underlying units
        delta_usd double precision,  -- USD
        gamma double precision,  -- per USD of underlying price
        vega_usd double precision,  -- USD per volatility point (0.01)
        theta_usd double precision,  -- USD per calendar day
        primary key (business_date, account_id, underlying)
    );
    """,
    """
    create table if not exists backtest_result (
        business_date date not null,
        run_id text,
        account_id text not null,
        model text not null,
        horizon_days bigint not null,  -- calendar days
        margin_usd double precision,  -- USD
        pnl_usd double precision,  -- USD (loss < 0)
        exceedance boolean,
        primary key (business_date, account_id, model, horizon_days)
    );
    """,
    """
    create table if not exists backtest_summary (
        business_date date not null,
        run_id text,
        as_of_date date,
        model text not null,
        window_start date not null,
        window_end date not null,
        observations bigint,  -- count
        exceedances bigint,  -- count
        expected_exceedances double precision,  -- count
        confidence double precision not null,  -- fraction (0.99)
        kupiec_pvalue double precision,  -- probability
        christoffersen_pvalue double precision,  -- probability
        traffic_light text,
        peak_to_trough double precision,  -- ratio
        max_increase_5d double precision,  -- ratio
        max_increase_30d double precision,  -- ratio
        primary key (business_date, model, window_start, window_end, confidence)
    );
    """,
    """
    create table if not exists data_quality (
        business_date date not null,
        run_id text,
        dataset text not null,
        "check" text not null,
        severity text,
        success boolean,
        failed_rows bigint,  -- count
        detail text,
        primary key (business_date, dataset, "check")
    );
    """,
    """
    create table if not exists pipeline_run (
        run_id text not null,
        business_date date,
        started_at timestamp with time zone,
        finished_at timestamp with time zone,
        status text,
        code_version text,
        ruleset text,
        ruleset_sha256 text,
        inputs_sha256 text,
        landing_dir text,
        message text,
        primary key (run_id)
    );
    """,
]
NAMES = [
    "margin_account",
    "margin_component",
    "position_risk",
    "greeks_account",
    "backtest_result",
    "backtest_summary",
    "data_quality",
    "pipeline_run",
]


def upgrade() -> None:
    for statement in TABLES:
        op.execute(statement)


def downgrade() -> None:
    for name in reversed(NAMES):
        op.execute(f"drop table if exists {name}")
