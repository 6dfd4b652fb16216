"""The production deployment of deploy/: the instance of ``deploy/dagster.yaml`` keeps
its runs and event logs in a real PostgreSQL and runs a sharded end of day with the
multiprocess executor; the executors of ``MARGIN_EXECUTOR`` load; the local instance of
``make ui`` has the same run queue rules."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from tests.support import PROJECT, published

D = dt.date(2026, 11, 20)


def _instance_home(tmp_path: Path, config: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(config, home / "dagster.yaml")
    return home


def _queue_limits(instance) -> list[dict]:  # type: ignore[no-untyped-def]
    from dagster._core.run_coordinator import QueuedRunCoordinator

    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    return instance.get_concurrency_config().run_queue_config.tag_concurrency_limits


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.postgres
def test_production_instance_on_postgres_runs_a_sharded_end_of_day(
    fresh_postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg
    import sqlalchemy as sa

    from pipelines.runner import run_business_date
    from risk_core.landing.generator import generate_landing

    pg = sa.engine.make_url(fresh_postgres_url)
    for key, value in {
        "DAGSTER_PG_HOST": pg.host,
        "DAGSTER_PG_PORT": str(pg.port or 5432),
        "DAGSTER_PG_USER": pg.username,
        "DAGSTER_PG_PASSWORD": pg.password or "",
        "DAGSTER_PG_DB": pg.database,
    }.items():
        monkeypatch.setenv(key, str(value))
    home = _instance_home(tmp_path, PROJECT / "deploy" / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    landing = tmp_path / "landing"
    generate_landing(landing, D, accounts=24, positions=300, seed=9)
    warehouse = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        limits = _queue_limits(instance)
        assert {
            "key": "dagster/partition",
            "value": {"applyLimitPerUniqueValue": True},
            "limit": 1,
        } in limits
        outcome = run_business_date(
            D,
            landing_dir=str(landing),
            warehouse_url=warehouse,
            artefacts_dir=str(tmp_path / "art"),
            instance=instance,
            shards=2,
            processes=2,
        )
        assert outcome.success, outcome.errors
        run = instance.get_run_by_id(outcome.run_id)
        assert run is not None and run.tags["dagster/partition"] == D.isoformat()
        records = instance.fetch_materializations(dg.AssetKey("margin_account"), limit=10).records
        assert [r.run_id for r in records] == [outcome.run_id]
        meta = records[0].asset_materialization.metadata
        assert meta["ruleset_sha256"].value and meta["rows"].value > 0
    # the run's records are in PostgreSQL itself
    engine = sa.create_engine(fresh_postgres_url)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("select run_id from runs")).scalars().all()
    engine.dispose()
    assert outcome.run_id in stored
    run_id, rows = published(warehouse, D)
    assert run_id == outcome.run_id and rows["position_risk"].height == 300


def test_local_instance_of_make_ui_has_the_queue_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    home = _instance_home(tmp_path, PROJECT / "deploy" / "local" / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert {
            "key": "dagster/partition",
            "value": {"applyLimitPerUniqueValue": True},
            "limit": 1,
        } in _queue_limits(instance)
        assert instance.run_monitoring_enabled
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


@pytest.mark.parametrize(
    ("name", "executor"),
    [
        ("multiprocess", "multiprocess"),
        ("in_process", "in_process"),
        ("celery", "celery"),
        ("k8s", "k8s"),
    ],
)
def test_the_executor_follows_margin_executor(
    name: str, executor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.definitions import END_OF_DAY_JOB, build_definitions

    monkeypatch.setenv("MARGIN_EXECUTOR", name)
    job = build_definitions().resolve_job_def(END_OF_DAY_JOB)
    assert job.executor_def.name == executor


def test_an_unknown_executor_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.definitions import build_definitions

    monkeypatch.setenv("MARGIN_EXECUTOR", "slurm")
    with pytest.raises(ValueError, match="MARGIN_EXECUTOR='slurm'"):
        build_definitions()
