-- Capital efficiency per account and date: portfolio against standard initial margin
-- (all pools summed in USD). efficiency_ratio < 1: portfolio margin needs less capital.
create or replace view v_capital_efficiency as
select
    business_date,
    account_id,
    sum(case when model = 'portfolio' then initial_margin_usd else 0 end) as portfolio_im_usd, -- USD
    sum(case when model = 'standard' then initial_margin_usd else 0 end) as standard_im_usd,   -- USD
    sum(case when model = 'standard' then initial_margin_usd else 0 end)
      - sum(case when model = 'portfolio' then initial_margin_usd else 0 end) as saving_usd,  -- USD
    case
        when sum(case when model = 'standard' then initial_margin_usd else 0 end) > 0
        then sum(case when model = 'portfolio' then initial_margin_usd else 0 end)
             / sum(case when model = 'standard' then initial_margin_usd else 0 end)
    end as efficiency_ratio  -- portfolio / standard, dimensionless
from margin_account
group by business_date, account_id;
