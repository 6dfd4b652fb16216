"""The single Dagster ``Definitions`` of the project (``workspace.yaml`` points here)."""

from __future__ import annotations

import dagster as dg

from assets import ALL_ASSETS
from pipelines.resources import build_resources

END_OF_DAY_JOB = "end_of_day"

end_of_day = dg.define_asset_job(
    END_OF_DAY_JOB,
    selection=dg.AssetSelection.groups("ingest", "risk", "backtest", "warehouse"),
    description="Ingest, validate, compute and publish one business date.",
)


@dg.schedule(
    job=end_of_day,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    description="Every day at 00:30 UTC, the end-of-day of that date (its 00:00 UTC snapshot).",
)
def daily_end_of_day(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    date = context.scheduled_execution_time.date().isoformat()
    return dg.RunRequest(run_key=date, partition_key=date)


def build_definitions(
    landing_dir: str | None = None,
    warehouse_url: str | None = None,
    ruleset: str | None = None,
    artefacts_dir: str | None = None,
    in_memory: bool = False,
    shards: int | None = None,
) -> dg.Definitions:
    """Definitions bound to the given settings (defaults from the environment).

    ``in_memory`` keeps intermediate values in memory (a single-process run from the
    command line) instead of pickling them to the Dagster instance's storage.
    """
    resources: dict[str, object] = dict(
        build_resources(landing_dir, warehouse_url, ruleset, artefacts_dir, shards)
    )
    executor = None
    if in_memory:
        resources["io_manager"] = dg.mem_io_manager
        executor = dg.in_process_executor
    return dg.Definitions(
        assets=ALL_ASSETS,
        jobs=[end_of_day],
        schedules=[daily_end_of_day],
        resources=resources,
        executor=executor,
    )


defs = build_definitions()


def end_of_day_job() -> dg.JobDefinition:
    """The end-of-day job with settings from the environment: what each step process of
    the multiprocess executor rebuilds (``dg.reconstructable(end_of_day_job)``)."""
    return build_definitions().resolve_job_def(END_OF_DAY_JOB)
