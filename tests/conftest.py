"""Shared fixtures: real market data and the PostgreSQL server.

Tests reading ``../shared/data`` skip with a reason when it is absent. Tests needing
PostgreSQL skip when no server answers, unless ``REQUIRE_POSTGRES=1`` (CI), where they
fail. Each test session works in its own fresh PostgreSQL database, dropped at the end.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def _numpy_warnings_are_errors() -> Iterator[None]:
    """A NaN Greek fails a test instead of a margin call."""
    with np.errstate(all="raise", under="ignore"):
        yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real market data not found at {SHARED_DATA}")
    return SHARED_DATA


def _postgres_admin_url() -> str:
    return os.environ.get("MARGIN_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@contextlib.contextmanager
def _fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards; skip (or fail when
    REQUIRE_POSTGRES=1) when no server answers."""
    import sqlalchemy as sa

    admin_url = _postgres_admin_url()
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:  # no server answers
        admin.dispose()
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required (REQUIRE_POSTGRES=1) but unreachable: {exc}")
        pytest.skip(f"no PostgreSQL server answers at {admin_url}")
    name = f"margin_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "select pg_terminate_backend(pid) from pg_stat_activity where datname = :n"
                ),
                {"n": name},
            )
            conn.execute(sa.text(f'drop database if exists "{name}"'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session."""
    with _fresh_database() as url:
        yield url


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    with _fresh_database() as url:
        yield url


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An empty warehouse at the newest schema, on DuckDB and on PostgreSQL."""
    from pipelines.warehouse import Warehouse
    from risk_core import outputs

    if request.param == "duckdb":
        url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    else:
        url = request.getfixturevalue("postgres_url")
    wh = Warehouse(url)
    with wh.engine.begin() as conn:
        for table in [*(t.name for t in outputs.ALL_TABLES), "alembic_version"]:
            conn.exec_driver_sql(f"drop table if exists {table} cascade")
    wh.create_schema()
    return wh
