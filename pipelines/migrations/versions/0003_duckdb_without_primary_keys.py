"""DuckDB: tables without primary-key indexes.

DuckDB keeps a primary key in an ART index; deleting a business date and inserting the
same keys again in one transaction then costs seconds per million rows (measured: a
1,000,000-position date took 47 s to republish, 0.07 s per table without the index).
Keys stay unique because the writer replaces whole dates and refuses frames with
duplicated or null keys (``Warehouse._conform``). PostgreSQL keeps its primary keys.

Revision ID: 0003
Revises: 0002
"""

from pathlib import Path

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = [
    "margin_account",
    "margin_component",
    "position_risk",
    "greeks_account",
    "backtest_result",
    "backtest_summary",
    "data_quality",
    "pipeline_run",
]
VIEWS = Path(__file__).resolve().parents[3] / "sql" / "views"


def _view_name(sql: str) -> str:
    return sql.split("create or replace view", 1)[1].split()[0]


def upgrade() -> None:
    if op.get_context().dialect.name != "duckdb":
        return
    views = [path.read_text() for path in sorted(VIEWS.glob("*.sql"))]
    for sql in views:
        op.execute(f"drop view if exists {_view_name(sql)}")
    for name in TABLES:
        op.execute(f"create table {name}__rebuilt as select * from {name}")
        op.execute(f"drop table {name}")
        op.execute(f"alter table {name}__rebuilt rename to {name}")
    for sql in views:
        op.execute(sql)


def downgrade() -> None:
    """Keys are not restored: rebuild from revision 0001 if an index is wanted."""
