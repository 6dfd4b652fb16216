"""The single Dagster ``Definitions`` of the project (``workspace.yaml`` points here)."""

from __future__ import annotations

import os

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


#: ``MARGIN_EXECUTOR``: where the steps of a run execute. ``multiprocess`` (default: one
#: process per step on this machine), ``in_process``, or on other machines ``celery``
#: (dagster-celery workers) and ``k8s`` (one Kubernetes job per step, dagster-k8s); the
#: latter two need ``pip install 'margin-eod[deploy]'`` and a shared ``MARGIN_IO_BASE_DIR``
#: (deploy/README.md).
EXECUTORS = {
    "multiprocess": ("dagster", "multiprocess_executor"),
    "in_process": ("dagster", "in_process_executor"),
    "celery": ("dagster_celery", "celery_executor"),
    "k8s": ("dagster_k8s", "k8s_job_executor"),
}


def executor_setting(name: str | None = None) -> dg.ExecutorDefinition:
    """The executor named by ``name``, else ``MARGIN_EXECUTOR``, else multiprocess."""
    import importlib

    name = name or os.environ.get("MARGIN_EXECUTOR", "multiprocess")
    if name not in EXECUTORS:
        raise ValueError(f"MARGIN_EXECUTOR={name!r}: choose one of {', '.join(EXECUTORS)}")
    module, attribute = EXECUTORS[name]
    try:
        executor: dg.ExecutorDefinition = getattr(importlib.import_module(module), attribute)
    except ImportError:
        raise ValueError(
            f"MARGIN_EXECUTOR={name} needs {module}: pip install 'margin-eod[deploy]'"
        ) from None
    if name == "celery" and os.environ.get("DAGSTER_CELERY_BROKER_URL"):
        # the same settings as the workers' deploy/celery/celery.yaml
        executor = executor.configured(
            {
                "broker": {"env": "DAGSTER_CELERY_BROKER_URL"},
                "backend": {"env": "DAGSTER_CELERY_BACKEND_URL"},
            }
        )
    return executor


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
    command line) instead of pickling them to the Dagster instance's storage. Otherwise
    steps exchange values through files under ``MARGIN_IO_BASE_DIR`` (any path
    universal-pathlib opens, e.g. a shared volume or ``s3://bucket/prefix`` with s3fs),
    else the instance's storage folder, and run on the ``MARGIN_EXECUTOR``.
    """
    resources: dict[str, object] = dict(
        build_resources(landing_dir, warehouse_url, ruleset, artefacts_dir, shards)
    )
    if in_memory:
        resources["io_manager"] = dg.mem_io_manager
        executor = dg.in_process_executor
    else:
        if os.environ.get("MARGIN_IO_BASE_DIR"):
            resources["io_manager"] = dg.FilesystemIOManager(
                base_dir=dg.EnvVar("MARGIN_IO_BASE_DIR")
            )
        executor = executor_setting()
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
