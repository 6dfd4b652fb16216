-- Margin calls of each business date: accounts whose equity is below maintenance
-- margin under the governing (portfolio) model. Amounts in USD.
create or replace view v_margin_calls as
select
    business_date,
    account_id,
    pool_currency,
    ruleset,
    equity_usd,                      -- USD
    maintenance_margin_usd,          -- USD
    initial_margin_usd,              -- USD
    maintenance_margin_usd - equity_usd as shortfall_usd,  -- USD to bring equity to maintenance
    initial_margin_usd - equity_usd as call_to_initial_usd -- USD to bring equity to initial
from margin_account
where model = 'portfolio' and margin_call;
