-- margin_component: see CONTRACT.md section 3 and risk_core/outputs.py
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
