"""Run the end-of-day job for business dates, in process, and report the outcome.

Used by the ``margin-eod`` command and the tests: the same Dagster job the UI and the
schedule run, executed in one process with intermediate values kept in memory.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

import dagster as dg

from pipelines.definitions import END_OF_DAY_JOB, build_definitions


@dataclass(frozen=True)
class RunOutcome:
    business_date: dt.date
    success: bool
    run_id: str
    #: what went wrong, one line per failed check or step, without tracebacks
    errors: list[str] = field(default_factory=list)


def _instance() -> dg.DagsterInstance:
    """The instance of ``DAGSTER_HOME`` when set (runs then show in the UI), else ephemeral."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _root_message(error: object) -> str:
    """The innermost cause of a Dagster error: the user's exception, without a traceback."""
    while getattr(error, "cause", None) is not None:
        error = error.cause  # type: ignore[attr-defined]
    cls = getattr(error, "cls_name", None) or ""
    message = str(getattr(error, "message", error)).strip()
    prefix = message.split(":", 1)[0]
    if cls and prefix.endswith(cls):
        message = message.split(":", 1)[1].strip()
    return message


def failures(result: dg.ExecuteInProcessResult) -> list[str]:
    messages = []
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            text = evaluation.description or "failed"
            messages.append(f"check {evaluation.check_name} failed: {text}")
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_failure_data is not None:
            error = event.step_failure_data.error
            if error is not None:
                messages.append(f"{event.step_key}: {_root_message(error)}")
    return messages


def run_business_date(
    business_date: dt.date,
    *,
    landing_dir: str | None = None,
    warehouse_url: str | None = None,
    ruleset: str | None = None,
    artefacts_dir: str | None = None,
    instance: dg.DagsterInstance | None = None,
) -> RunOutcome:
    """Materialize every asset of ``business_date``; the warehouse changes only on success."""
    defs = build_definitions(landing_dir, warehouse_url, ruleset, artefacts_dir, in_memory=True)
    job = defs.resolve_job_def(END_OF_DAY_JOB)
    result = job.execute_in_process(
        partition_key=business_date.isoformat(),
        instance=instance or _instance(),
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    errors = [] if result.success else failures(result) or ["the run failed (see Dagster logs)"]
    return RunOutcome(business_date, result.success, result.run_id, errors)
