"""a version on each job, bumped by every state change of the job, its tasks or its attempts

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 15:40:00

The reconcile loop keeps each held job's snapshot (tasks, attempts) from tick to tick and reads a job
again only when its version moved: a quiet tick of 10,000 running tasks then reads no task or
attempt rows at all, and a busy one reads the jobs that changed. The version is bumped in the same
transaction as the change it stands for (`orchestrator.store.repo`), so a reader that saw version v
has seen every change up to v.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("version")
