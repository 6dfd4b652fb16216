-- Day-over-day change of each account's portfolio initial margin (USD), with the
-- previous published date and the change of its net delta as a first driver.
create or replace view v_margin_change as
with im as (
    select business_date, account_id, sum(initial_margin_usd) as initial_margin_usd
    from margin_account
    where model = 'portfolio'
    group by business_date, account_id
),
delta as (
    select business_date, account_id, sum(delta_usd) as delta_usd, sum(vega_usd) as vega_usd
    from greeks_account
    group by business_date, account_id
),
joined as (
    select
        im.business_date,
        im.account_id,
        im.initial_margin_usd,
        delta.delta_usd,
        delta.vega_usd,
        lag(im.business_date) over w as previous_date,
        lag(im.initial_margin_usd) over w as previous_initial_margin_usd,
        lag(delta.delta_usd) over w as previous_delta_usd,
        lag(delta.vega_usd) over w as previous_vega_usd
    from im
    left join delta using (business_date, account_id)
    window w as (partition by im.account_id order by im.business_date)
)
select
    business_date,
    account_id,
    previous_date,
    initial_margin_usd,                                        -- USD
    previous_initial_margin_usd,                               -- USD
    initial_margin_usd - previous_initial_margin_usd as change_usd,  -- USD
    delta_usd - previous_delta_usd as delta_usd_change,        -- USD of delta
    vega_usd - previous_vega_usd as vega_usd_change            -- USD per vol point
from joined;
