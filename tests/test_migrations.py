"""Alembic migrations upgrade a warehouse in place on DuckDB and PostgreSQL, and the
schema they build is the one risk_core.outputs describes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from pipelines.warehouse import Warehouse
from risk_core import outputs

SQL_TYPES = {
    pl.String(): {"text", "varchar", "character varying"},
    pl.Float64(): {"double precision", "double", "float8", "float"},  # duckdb-engine: FLOAT
    pl.Date(): {"date"},
    pl.Boolean(): {"boolean"},
    pl.Int64(): {"bigint", "int8"},
}


@pytest.fixture(params=["duckdb", "postgres"])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if request.param == "duckdb":
        return Warehouse(f"duckdb:///{tmp_path / 'm.duckdb'}")
    wh = Warehouse(request.getfixturevalue("postgres_url"))
    with wh.engine.begin() as conn:
        for view in sa.inspect(conn).get_view_names():
            conn.exec_driver_sql(f"drop view if exists {view}")
        for table in [*[t.name for t in outputs.ALL_TABLES], "alembic_version"]:
            conn.exec_driver_sql(f"drop table if exists {table} cascade")
    return wh


def test_upgrade_in_place_keeps_data(empty: Warehouse) -> None:
    empty.migrate("0001")
    assert empty.schema_revision() == "0001"
    assert sa.inspect(empty.engine).get_view_names() == []
    row = outputs.DATA_QUALITY.empty().extend(
        pl.DataFrame(
            {
                "business_date": [dt.date(2026, 1, 2)],
                "run_id": ["r"],
                "dataset": ["d"],
                "check": ["c"],
                "severity": ["error"],
                "success": [True],
                "failed_rows": [0],
                "detail": ["kept"],
            },
            schema=outputs.DATA_QUALITY.schema,
        )
    )
    empty.replace_business_date(dt.date(2026, 1, 2), {"data_quality": row})
    empty.create_schema()  # upgrade head, in place
    assert empty.schema_revision() == "0003"
    assert len(sa.inspect(empty.engine).get_view_names()) == 6
    assert empty.read_table("data_quality")["detail"].to_list() == ["kept"]


def test_schema_matches_the_output_tables(empty: Warehouse) -> None:
    empty.create_schema()
    inspector = sa.inspect(empty.engine)
    for table in outputs.ALL_TABLES:
        columns = {c["name"]: str(c["type"]).lower() for c in inspector.get_columns(table.name)}
        assert list(columns) == list(table.columns), table.name
        for name, dtype in table.columns.items():
            if isinstance(dtype, pl.Datetime):
                assert "timestamp" in columns[name]
            else:
                assert columns[name] in SQL_TYPES[dtype], (table.name, name, columns[name])
        # DuckDB: keys are kept unique by the writer, not by an index (revision 0003).
        expected = () if empty.dialect == "duckdb" else table.key
        assert _primary_key(empty, table.name) == expected, table.name


def _primary_key(warehouse: Warehouse, table: str) -> tuple[str, ...]:
    if warehouse.dialect == "duckdb":  # duckdb-engine does not reflect primary keys
        with warehouse.engine.connect() as conn:
            names = conn.execute(
                sa.text(
                    "select constraint_column_names from duckdb_constraints() "
                    "where table_name = :t and constraint_type = 'PRIMARY KEY'"
                ),
                {"t": table},
            ).scalar()
        return tuple(names or ())
    return tuple(sa.inspect(warehouse.engine).get_pk_constraint(table)["constrained_columns"])


@pytest.mark.postgres
def test_runs_starting_at_once_on_a_new_postgres_warehouse_all_upgrade_it(
    fresh_postgres_url: str,
) -> None:
    """Concurrent upgrades of an empty warehouse: one creates the schema, the others
    wait for its lock and find it at head (without the lock the second CREATE TABLE
    collides)."""
    import threading

    start = threading.Barrier(4, timeout=60)
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            warehouse = Warehouse(fresh_postgres_url, retry_s=5)
            start.wait()
            warehouse.create_schema()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "an upgrade hangs"
    assert errors == []
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from pipelines.warehouse import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert Warehouse(fresh_postgres_url).schema_revision() == head
