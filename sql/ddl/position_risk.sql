-- position_risk: see CONTRACT.md section 3 and risk_core/outputs.py
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
