"""Publication: every warehouse table of the business date, in one transaction."""

import datetime as dt

import dagster as dg
import polars as pl

from assets.backtest import BacktestRun
from assets.common import business_date, code_version
from assets.failpoints import publish_phase
from assets.landing import ValidatedLanding
from assets.partitions import business_dates
from assets.risk import MarginRun
from risk_core import eod, outputs

TABLE_DESCRIPTIONS = {
    "margin_account": "One row per account, model and pool: equity, initial and maintenance "
    "margin in the pool currency and in USD, excess and margin call.",
    "margin_component": "The breakdown of each margin_account row; components add up to its "
    "initial margin.",
    "position_risk": "One row per position: market value, Black-76 Greeks and the position's "
    "contribution to the account's portfolio initial margin (USD).",
    "greeks_account": "Sums of position Greeks per account and underlying.",
    "data_quality": "The outcome of every expectation evaluated on the landing data.",
    "backtest_result": "Each account's book of D - h revalued at D's marks against the margin "
    "of D - h, per model: P&L, margin, exceedance.",
    "backtest_summary": "Coverage, Kupiec and Christoffersen p-values, traffic light and "
    "procyclicality per model over the trailing window.",
    "pipeline_run": "How each published date was made: inputs' hashes, ruleset hash, code version.",
}

TABLE_INPUTS = {
    "margin_account": ["margin_results"],
    "margin_component": ["margin_results"],
    "position_risk": ["position_greeks", "margin_results"],
    "greeks_account": ["position_greeks"],
    "data_quality": ["landing_snapshot"],
    "backtest_result": ["backtest_results"],
    "backtest_summary": ["backtest_results"],
    "pipeline_run": ["landing_snapshot", "margin_results"],
}

WAREHOUSE_SPECS = [
    dg.AssetSpec(
        name,
        deps=TABLE_INPUTS[name],
        description=text,
        group_name="warehouse",
        kinds={"sql"},
        owners=["team:risk-engineering"],
        partitions_def=business_dates,
        metadata={"columns": ", ".join(outputs.BY_NAME[name].columns)},
    )
    for name, text in TABLE_DESCRIPTIONS.items()
]


@dg.multi_asset(
    specs=WAREHOUSE_SPECS,
    ins={
        "landing_snapshot": dg.AssetIn(),
        "position_greeks": dg.AssetIn(),
        "margin_results": dg.AssetIn(),
        "backtest_results": dg.AssetIn(),
    },
    partitions_def=business_dates,
    required_resource_keys={"warehouse"},
    can_subset=False,
    # A Dagster concurrency pool: the instance can cap publications at once
    # (deploy/dagster.yaml); one date's publications never overlap anyway (its lock).
    pool="warehouse_publish",
)
def warehouse_tables(
    context: dg.AssetExecutionContext,
    landing_snapshot: ValidatedLanding,
    position_greeks: pl.DataFrame,
    margin_results: MarginRun,
    backtest_results: BacktestRun,
):  # type: ignore[no-untyped-def]
    """Replace every table's rows of the business date in one transaction: all or nothing."""
    date = business_date(context)
    run_id = context.run.run_id
    tables = margin_results.tables
    ruleset = margin_results.ruleset
    frames = eod.margin_frames(tables, position_greeks)
    rows = {
        name: eod.stamp(frame, date, run_id, list(outputs.BY_NAME[name].columns))
        for name, frame in frames.items()
    }
    rows["data_quality"] = landing_snapshot.report.to_frame(run_id)
    for name, frame in (
        ("backtest_result", backtest_results.result),
        ("backtest_summary", backtest_results.summary),
    ):
        columns = list(outputs.BY_NAME[name].columns)
        rows[name] = (
            eod.stamp(frame, date, run_id, columns)
            if frame.height
            else outputs.BY_NAME[name].empty()
        )
    run_row = pl.DataFrame(
        {
            "run_id": [run_id],
            "business_date": [date],
            "started_at": [landing_snapshot.started_at],
            "finished_at": [dt.datetime.now(dt.UTC)],
            "status": ["success"],
            "code_version": [code_version()],
            "ruleset": [ruleset.label],
            "ruleset_sha256": [ruleset.sha256],
            "inputs_sha256": [landing_snapshot.data.inputs_sha256()],
            "landing_dir": [landing_snapshot.landing_dir],
            "message": [""],
        },
        schema=outputs.PIPELINE_RUN.schema,
    )
    warehouse = context.resources.warehouse.get()
    written = warehouse.replace_business_date(
        date, rows, pipeline_run=run_row, on_phase=publish_phase
    )
    totals = {
        m: float(v)
        for m, v in rows["margin_account"]
        .group_by("model")
        .agg(pl.col("initial_margin_usd").sum())
        .sort("model")
        .iter_rows()
    }
    for name in TABLE_DESCRIPTIONS:
        meta: dict[str, object] = {"rows": written.get(name, 0)}
        if name == "margin_account":
            meta.update({f"total_im_usd_{m}": v for m, v in totals.items()})
        meta.update({"ruleset_sha256": ruleset.sha256, "code_version": run_row["code_version"][0]})
        yield dg.MaterializeResult(asset_key=name, metadata=meta)
