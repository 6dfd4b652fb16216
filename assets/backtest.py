"""The daily backtest: the book of D - h revalued at D's marks against its margin."""

import datetime as dt
from dataclasses import dataclass

import dagster as dg
import polars as pl

from assets.common import OWNERS, business_date
from assets.landing import ValidatedLanding
from assets.partitions import business_dates
from assets.risk import MarginRun
from risk_core import eod, outputs
from risk_core.backtest.daily import daily_backtest
from risk_core.backtest.summary import (
    stored_dates_needed,
    summarize_window,
    window_daily_totals,
)
from risk_core.landing.reader import LandingError, read_landing
from risk_core.margin.base import MarginInputs


def _charts(
    context: dg.AssetExecutionContext, date: dt.date, daily: pl.DataFrame
) -> dict[str, dg.MetadataValue]:
    """Per model: total margin against total realized loss over the window (``daily``:
    the window's daily totals per model, USD), as PNG files in the run's artefacts and
    inline images in the asset's metadata."""
    import base64

    from risk_core.backtest import charts

    if daily.is_empty():
        return {}
    folder = context.resources.artefacts.folder("backtest", date, context.run.run_id)
    totals = daily.with_columns(
        pl.lit("all accounts").alias("account_id"),
        (-pl.col("pnl_usd") > pl.col("margin_usd")).alias("exceedance"),
    )
    out: dict[str, dg.MetadataValue] = {}
    for model in sorted(set(totals["model"])):
        path = charts.margin_vs_loss(totals, model, "all accounts", folder / f"{model}.png")
        encoded = base64.b64encode(path.read_bytes()).decode()
        out[f"chart_{model}"] = dg.MetadataValue.md(f"![{model}](data:image/png;base64,{encoded})")
        out[f"chart_{model}_file"] = dg.MetadataValue.path(str(path))
    return out


#: What the backtest needs of the margin published for D - h.
MARGIN_COLUMNS = ["account_id", "model", "pool_currency", "initial_margin_usd"]


@dataclass(frozen=True)
class BacktestRun:
    result: pl.DataFrame  #: backtest_result rows of D, without business_date and run_id
    summary: pl.DataFrame  #: backtest_summary rows as of D, without business_date and run_id
    note: str


@dg.asset(
    partitions_def=business_dates,
    group_name="backtest",
    kinds={"numpy", "scipy"},
    owners=OWNERS,
    required_resource_keys={"landing", "warehouse", "artefacts"},
)
def backtest_results(
    context: dg.AssetExecutionContext,
    landing_snapshot: ValidatedLanding,
    instrument_marks: MarginInputs,
    margin_results: MarginRun,
) -> dg.Output[BacktestRun]:
    """Each account's book of D - h (its landing data) held fixed and revalued at D's
    marks, against the initial margin published for D - h; and the summary (coverage,
    Kupiec, Christoffersen, traffic light, procyclicality) over the trailing window."""
    date = business_date(context)
    settings = margin_results.ruleset.backtest
    horizon = int(settings["horizon_days"])
    before_date = date - dt.timedelta(days=horizon)
    warehouse = context.resources.warehouse.get()
    margin_before = warehouse.read_table("margin_account", before_date, columns=MARGIN_COLUMNS)
    try:
        before = read_landing(context.resources.landing.path(), before_date)
    except LandingError as err:
        before, note = None, f"no landing data for {before_date}: {err.rule}"
    if before is None or margin_before.is_empty():
        note = note if before is None else f"nothing published for {before_date}"
        result = pl.DataFrame()
    else:
        result = daily_backtest(
            before.positions,
            margin_before,
            eod.instrument_table(before),
            instrument_marks.table,
            horizon,
        )
        note = f"book of {before_date} against {date}"
    # The window: today's rows in memory, the stored dates aggregated in the warehouse.
    today = (
        result.with_columns(pl.lit(date).alias("business_date"))
        if result.height
        else outputs.BACKTEST_RESULT.empty().drop("run_id")
    )
    window_days = int(settings["window_days"])
    stored = warehouse.read_backtest_window(date, stored_dates_needed(today, window_days))
    summary = summarize_window(stored, today, date, float(settings["confidence"]), window_days)
    charts = _charts(context, date, window_daily_totals(stored, today))
    lights = dict(summary.select("model", "traffic_light").iter_rows()) if summary.height else {}
    return dg.Output(
        BacktestRun(result, summary, note),
        metadata={
            "note": note,
            "rows": result.height,
            "exceedances": int(result["exceedance"].sum()) if result.height else 0,
            **{f"traffic_light_{m}": t for m, t in lights.items()},
            **charts,
        },
    )
