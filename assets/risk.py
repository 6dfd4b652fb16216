"""Marks with implied volatilities, position Greeks and the margin models."""

from dataclasses import dataclass

import dagster as dg
import polars as pl

from assets.common import OWNERS
from assets.failpoints import failpoint
from assets.landing import ValidatedLanding
from assets.partitions import business_dates
from risk_core import eod
from risk_core.margin.base import MarginInputs, MarginResult
from risk_core.ruleset import Ruleset
from risk_core.sharding import merge_results, shard_inputs


@dg.asset(partitions_def=business_dates, group_name="risk", kinds={"numpy"}, owners=OWNERS)
def instrument_marks(landing_snapshot: ValidatedLanding) -> dg.Output[MarginInputs]:
    """Every instrument with its forward, time to expiry and volatility (Black-76 implied
    vol solved where the mark has none), joined to positions and collateral: the inputs
    of every margin model."""
    data = landing_snapshot.data
    table = eod.instrument_table(data)
    inputs = eod.margin_inputs(data, table)
    return dg.Output(
        inputs,
        metadata={
            "instruments": len(table),
            "implied_vols_solved": int(table.iv_solved.sum()),
            "accounts": inputs.positions.n_accounts,
            "positions": inputs.positions_frame.height,
        },
    )


@dg.asset(partitions_def=business_dates, group_name="risk", kinds={"polars"}, owners=OWNERS)
def position_greeks(instrument_marks: MarginInputs) -> dg.Output[pl.DataFrame]:
    """Black-76 Greeks of every position (delta in underlying units, gamma per USD, vega
    per volatility point, theta per calendar day, in USD) and its market value."""
    greeks = eod.position_greeks(instrument_marks)
    net = greeks.group_by("underlying").agg(pl.col("delta").sum()).sort("underlying")
    return dg.Output(
        greeks,
        metadata={
            "rows": greeks.height,
            **{f"net_delta_{u}": float(d) for u, d in net.iter_rows()},
        },
    )


@dataclass(frozen=True)
class MarginRun:
    tables: eod.MarginTables
    ruleset: Ruleset


@dg.op(out=dg.DynamicOut(MarginInputs), required_resource_keys={"sharding"})
def account_shards(context: dg.OpExecutionContext, instrument_marks: MarginInputs):  # type: ignore[no-untyped-def]
    """The model inputs split into account shards of about equal work
    (:mod:`risk_core.sharding`); one shard unless the ``sharding`` resource says more."""
    for i, shard in enumerate(shard_inputs(instrument_marks, context.resources.sharding.shards)):
        yield dg.DynamicOutput(shard, mapping_key=f"shard_{i:04d}")


@dataclass(frozen=True)
class ShardResult:
    ruleset_sha256: str  #: the ruleset the shard was computed with
    results: dict[str, MarginResult]


@dg.op(required_resource_keys={"ruleset"})
def shard_margin(context: dg.OpExecutionContext, shard: MarginInputs) -> ShardResult:
    """Every model of the ruleset on one shard's accounts."""
    ruleset = context.resources.ruleset.load()
    return ShardResult(ruleset.sha256, eod.run_models(shard, ruleset))


@dg.op(required_resource_keys={"ruleset"})
def merged_margin(
    context: dg.OpExecutionContext, shards: list[ShardResult]
) -> dg.Output[MarginRun]:
    """The shards' results as the warehouse's margin tables (sorted: the shard count
    does not change a byte). Every shard must have read the ruleset recorded here: a
    ruleset file edited during the run stops it instead of mixing two rulesets."""
    ruleset = context.resources.ruleset.load()
    mixed = sorted({s.ruleset_sha256 for s in shards} - {ruleset.sha256})
    if mixed:
        raise ValueError(
            f"ruleset {ruleset.label} changed during the run: shards computed with "
            f"sha256 {', '.join(h[:12] for h in mixed)}, now {ruleset.sha256[:12]}; run again"
        )
    tables = eod.margin_tables(merge_results([s.results for s in shards]), ruleset)
    failpoint("compute")
    totals = (
        tables.margin_account.group_by("model")
        .agg(pl.col("initial_margin_usd").sum(), pl.col("margin_call").sum())
        .sort("model")
    )
    return dg.Output(
        MarginRun(tables, ruleset),
        metadata={
            "ruleset": ruleset.label,
            "ruleset_sha256": ruleset.sha256,
            "shards": len(shards),
            **{f"total_im_usd_{m}": float(im) for m, im, _ in totals.iter_rows()},
            **{f"margin_calls_{m}": int(c) for m, _, c in totals.iter_rows()},
        },
    )


@dg.graph_asset(
    partitions_def=business_dates, group_name="risk", kinds={"numpy", "scipy"}, owners=OWNERS
)
def margin_results(instrument_marks: MarginInputs) -> MarginRun:
    """Every model of the ruleset side by side: the governing portfolio margin, the
    per-position standard baseline and further models (historical ES). Computed per
    account shard in parallel steps (``MARGIN_SHARDS``), merged into one result."""
    parts = account_shards(instrument_marks).map(shard_margin)
    return merged_margin(parts.collect())
