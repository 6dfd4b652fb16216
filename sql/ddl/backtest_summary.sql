-- backtest_summary: see CONTRACT.md section 3 and risk_core/outputs.py
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
