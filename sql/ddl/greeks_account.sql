-- greeks_account: see CONTRACT.md section 3 and risk_core/outputs.py
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
