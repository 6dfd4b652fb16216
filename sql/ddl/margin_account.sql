-- margin_account: see CONTRACT.md section 3 and risk_core/outputs.py
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
