-- Backtest traffic lights per model: the latest summary of each model and window.
create or replace view v_backtest_traffic_lights as
select
    as_of_date,
    model,
    window_start,
    window_end,
    observations,
    exceedances,
    expected_exceedances,
    confidence,                 -- e.g. 0.99
    kupiec_pvalue,
    christoffersen_pvalue,
    traffic_light               -- green, yellow, red
from backtest_summary;
