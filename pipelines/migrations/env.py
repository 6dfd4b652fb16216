"""Alembic environment of the warehouse: DuckDB and PostgreSQL.

The URL comes from the caller's connection (``Warehouse.migrate``), ``-x url=...`` or
``MARGIN_WAREHOUSE_URL``. Alembic has no DuckDB implementation: a minimal one is
registered here (DuckDB speaks PostgreSQL's DDL for everything the migrations use).
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context
from alembic.ddl.impl import DefaultImpl


class DuckDBImpl(DefaultImpl):
    __dialect__ = "duckdb"
    transactional_ddl = True


config = context.config
connection = config.attributes.get("connection")
if connection is None:
    url = (
        context.get_x_argument(as_dictionary=True).get("url") or os.environ["MARGIN_WAREHOUSE_URL"]
    )
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
