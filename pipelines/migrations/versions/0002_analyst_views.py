"""Analyst views (sql/views): created or replaced from the files, which are idempotent.

Revision ID: 0002
Revises: 0001
"""

from pathlib import Path

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

VIEWS = Path(__file__).resolve().parents[3] / "sql" / "views"


def upgrade() -> None:
    for path in sorted(VIEWS.glob("*.sql")):
        op.execute(path.read_text())


def downgrade() -> None:
    for path in sorted(VIEWS.glob("*.sql")):
        name = path.read_text().split("create or replace view", 1)[1].split()[0]
        op.execute(f"drop view if exists {name}")
