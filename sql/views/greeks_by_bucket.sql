-- Greeks by underlying and expiry bucket, summed over all accounts of a date.
-- Buckets by calendar days from the business date to expiry; perpetuals and spot have
-- no expiry ('none').
create or replace view v_greeks_by_bucket as
select
    business_date,
    underlying,
    case
        when expiry is null then 'none'
        when cast(expiry as date) - business_date <= 7 then '0-7d'
        when cast(expiry as date) - business_date <= 30 then '8-30d'
        when cast(expiry as date) - business_date <= 90 then '31-90d'
        when cast(expiry as date) - business_date <= 180 then '91-180d'
        else '>180d'
    end as expiry_bucket,
    count(*) as positions,
    sum(delta) as delta,         -- underlying units
    sum(delta_usd) as delta_usd, -- USD
    sum(gamma) as gamma,         -- per USD
    sum(vega_usd) as vega_usd,   -- USD per volatility point
    sum(theta_usd) as theta_usd  -- USD per calendar day
from position_risk
group by 1, 2, 3;
