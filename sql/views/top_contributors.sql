-- Positions ranked by their contribution to their account's portfolio initial margin.
-- share_of_account: the position's fraction of the account's margin (may be negative for
-- hedges).
create or replace view v_top_margin_contributors as
select
    business_date,
    account_id,
    instrument_id,
    underlying,
    kind,
    quantity,                          -- contracts, signed
    margin_contribution_usd,           -- USD
    margin_contribution_usd
      / nullif(sum(margin_contribution_usd) over (partition by business_date, account_id), 0)
      as share_of_account,             -- fraction
    rank() over (
        partition by business_date order by margin_contribution_usd desc
    ) as rank_of_day
from position_risk;
