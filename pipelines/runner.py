"""Run the end-of-day job for business dates and report the outcome.

Used by the ``margin-eod`` command and the tests: the same Dagster job the UI and the
schedule run. With one process it executes in this process, intermediate values kept in
memory. With several processes it runs under Dagster's multiprocess executor, one
process per step (the account shards of the margin models in parallel), intermediate
values pickled to the instance's storage; step processes rebuild the job from the
environment (``MARGIN_*`` variables, set here for the duration of the run).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import dagster as dg

from pipelines.definitions import END_OF_DAY_JOB, build_definitions, end_of_day_job


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


@contextlib.contextmanager
def _persistent_instance() -> Iterator[dg.DagsterInstance]:
    """An instance whose storage step processes share: ``DAGSTER_HOME``'s, else a
    temporary one removed afterwards."""
    if os.environ.get("DAGSTER_HOME"):
        yield dg.DagsterInstance.get()
        return
    with tempfile.TemporaryDirectory(prefix="margin-eod-dagster-") as home:
        with dg.DagsterInstance.local_temp(
            home, overrides={"telemetry": {"enabled": False}}
        ) as instance:
            yield instance


@contextlib.contextmanager
def _environment(settings: Mapping[str, str | None]) -> Iterator[None]:
    """Set the given variables (those not None) for the duration of the block."""
    saved = {k: os.environ.get(k) for k in settings}
    try:
        for key, value in settings.items():
            if value is not None:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


def failures(result: dg.ExecuteInProcessResult | dg.JobExecutionResult) -> list[str]:
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


QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_business_date(
    business_date: dt.date,
    *,
    landing_dir: str | None = None,
    warehouse_url: str | None = None,
    ruleset: str | None = None,
    artefacts_dir: str | None = None,
    instance: dg.DagsterInstance | None = None,
    shards: int | None = None,
    processes: int = 1,
) -> RunOutcome:
    """Materialize every asset of ``business_date``; the warehouse changes only on success.

    ``shards``: account shards of the margin models (default ``MARGIN_SHARDS``, else 1);
    ``processes``: at most this many steps at once, each in its own process (1: all in
    this process). Neither changes a published number.
    """
    partition = business_date.isoformat()
    if processes <= 1:
        defs = build_definitions(
            landing_dir, warehouse_url, ruleset, artefacts_dir, in_memory=True, shards=shards
        )
        result: dg.ExecuteInProcessResult | dg.JobExecutionResult = defs.resolve_job_def(
            END_OF_DAY_JOB
        ).execute_in_process(
            partition_key=partition,
            instance=instance or _instance(),
            raise_on_error=False,
            run_config=QUIET_LOGS,
        )
    else:
        settings = {
            "MARGIN_LANDING_DIR": landing_dir,
            "MARGIN_WAREHOUSE_URL": warehouse_url,
            "MARGIN_RULESET": ruleset,
            "MARGIN_ARTEFACTS_DIR": artefacts_dir,
            "MARGIN_SHARDS": None if shards is None else str(shards),
            "MARGIN_EXECUTOR": "multiprocess",
        }
        run_config = {**QUIET_LOGS, "execution": {"config": {"max_concurrent": processes}}}
        with _environment(settings), contextlib.ExitStack() as stack:
            target = instance or stack.enter_context(_persistent_instance())
            result = dg.execute_job(
                dg.reconstructable(end_of_day_job),
                instance=target,
                run_config=run_config,
                tags={"dagster/partition": partition},
                raise_on_error=False,
            )
    errors = [] if result.success else failures(result) or ["the run failed (see Dagster logs)"]
    return RunOutcome(business_date, result.success, result.run_id, errors)
