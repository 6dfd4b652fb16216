-- backtest_result: see CONTRACT.md section 3 and risk_core/outputs.py
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
