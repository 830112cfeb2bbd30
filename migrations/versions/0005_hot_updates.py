"""room in each page of jobs, tasks and attempts for PostgreSQL to update their rows in place

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 18:40:00

Every tick renews each held job's lease and, when its tasks report progress, rewrites each running
task and attempt row. PostgreSQL writes an update as a new row version; when the page has room and no
indexed column changed it stays in that page and no index is touched (a "HOT" update). At the
default fill factor (100) the pages are full, so each of those writes also wrote every index of its
table: at 10,000 running tasks the tick's three bulk updates took ~0.6 s, and ~0.2 s at a fill factor
of 70 (a one-off statement timer; bench/scale.py's progress tick on PostgreSQL: 1.45 s -> 0.73 s with
this and the batched writes, docs/benchmarks.md). New rows get the room at once; rows already stored get it
as autovacuum rewrites their pages. SQLite has no such setting: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("jobs", "tasks", "attempts")
FILL_FACTOR = 70


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {FILL_FACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
