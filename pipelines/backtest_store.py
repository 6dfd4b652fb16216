"""backtest_result aggregated over a trailing window, in the warehouse.

The daily summary runs over the last 250 business dates: at 100,000 accounts and 3
models that is 75 million backtest_result rows, which never leave the database. Per
model, one statement orders each account's rows by business date (``lag``/``lead`` over
the account) and returns one row per account: its observations, exceedances,
Christoffersen transition counts and whether its latest row is an exceedance
(:data:`risk_core.backtest.summary.ACCOUNT_SEQUENCES`, 100,000 rows a model); one more
returns the daily totals per model (:data:`~risk_core.backtest.summary.DAILY_TOTALS`,
750 rows). :func:`risk_core.backtest.summary.summarize_window` adds today's rows.

A model runs in its own statement so that the database sorts one model's rows at a time
(measured on DuckDB at 100,000 accounts x 250 dates: 3.3 GiB peak for the whole summary,
against 5.3 GiB for one statement over all three models). Every statement reads the
same snapshot. The daily totals are exact decimal sums, so they do not depend on the
order the database adds rows in (published numbers are reproducible bit for bit). The SQL is
portable (DuckDB and PostgreSQL); names come from :mod:`risk_core.outputs`, values are
bound parameters.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import polars as pl

from risk_core import outputs
from risk_core.backtest.summary import ACCOUNT_SEQUENCES, DAILY_TOTALS, WindowAggregates

if TYPE_CHECKING:
    from pipelines.warehouse import SelectFrame, Warehouse

TABLE = outputs.BACKTEST_RESULT.name

#: The last :dates business dates before :before, newest first.
WINDOW_DATES_SQL = f"""
select distinct business_date from {TABLE}
where business_date < :before
order by business_date desc
limit :dates
"""

#: Total margin and P&L (USD) per business date and model over the window (nulls add 0).
#: Summed as exact decimals (to 1e-12 USD) and converted once: the same bits whatever
#: order the database adds the rows in (a float sum's last bits depend on it).
DAILY_TOTALS_SQL = f"""
select business_date, model,
       cast(coalesce(sum(cast(margin_usd as decimal(38, 12))), 0) as double precision)
           as margin_usd,
       cast(coalesce(sum(cast(pnl_usd as decimal(38, 12))), 0) as double precision) as pnl_usd
from {TABLE}
where business_date >= :first and business_date < :before
group by business_date, model
order by business_date, model
"""

#: One model's accounts over the window: each account's rows in date order (then
#: horizon), its exceedance before each row (``previous``, null on its first row) and
#: whether a row is its latest; summed per account. A null exceedance counts as none.
ACCOUNT_SEQUENCES_SQL = f"""
with ordered as (
    select model,
           account_id,
           coalesce(exceedance, false) as exceedance,
           lag(coalesce(exceedance, false)) over account_dates as previous,
           lead(business_date) over account_dates is null as is_latest
    from {TABLE}
    where model = :model and business_date >= :first and business_date < :before
    window account_dates as (partition by account_id order by business_date, horizon_days)
)
select model,
       account_id,
       cast(count(*) as bigint) as observations,
       cast(sum(case when exceedance then 1 else 0 end) as bigint) as exceedances,
       cast(sum(case when not previous and not exceedance then 1 else 0 end) as bigint) as n00,
       cast(sum(case when not previous and exceedance then 1 else 0 end) as bigint) as n01,
       cast(sum(case when previous and not exceedance then 1 else 0 end) as bigint) as n10,
       cast(sum(case when previous and exceedance then 1 else 0 end) as bigint) as n11,
       bool_or(is_latest and exceedance) as last_exceedance
from ordered
group by model, account_id
"""


def _window(select: SelectFrame, before: dt.date, dates: int) -> WindowAggregates:
    if dates <= 0:
        return WindowAggregates.empty()
    window = select(
        WINDOW_DATES_SQL, {"before": before, "dates": dates}, {"business_date": pl.Date()}
    )
    if window.is_empty():
        return WindowAggregates.empty()
    stored = tuple(sorted(window["business_date"].to_list()))
    bounds = {"first": stored[0], "before": before}
    daily = select(DAILY_TOTALS_SQL, bounds, DAILY_TOTALS)
    models = sorted(set(daily["model"].to_list()))
    per_model = [
        select(ACCOUNT_SEQUENCES_SQL, {**bounds, "model": model}, ACCOUNT_SEQUENCES)
        for model in models
    ]
    accounts = pl.concat(per_model) if per_model else pl.DataFrame(schema=ACCOUNT_SEQUENCES)
    return WindowAggregates(stored, accounts, daily)


def read_window(warehouse: Warehouse, before: dt.date, dates: int) -> WindowAggregates:
    """Aggregates of backtest_result over its last ``dates`` business dates before
    ``before`` (fewer when fewer are stored; none when ``dates`` is 0)."""
    return warehouse.read_consistent(
        f"aggregate backtest_result before {before}", lambda select: _window(select, before, dates)
    )
