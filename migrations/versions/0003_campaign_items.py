"""campaign items: one row per item of an `[array] items = ...` job, leased by workers

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 10:00:00

Items are leased, not pinned to shards: a worker takes a chunk (`state = 'leased'`, its owner and
an expiry), renews the lease while it works, and commits each result into the item's own row, so
there is one result per item by construction (see orchestrator/store/items.py for the rules).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("leases", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("oom_gpu_memory_gb", sa.Float(), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("result_uri", sa.Text(), nullable=True),
        sa.Column("done_by", sa.String(length=64), nullable=True),
        sa.Column("work_seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("done_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "index", name="uq_items_job_index"),
    )
    op.create_index("ix_items_job_state_index", "campaign_items", ["job_id", "state", "index"])
    op.create_index("ix_items_lease_owner", "campaign_items", ["lease_owner"])
    op.create_index("ix_items_state_expiry", "campaign_items", ["state", "lease_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_items_state_expiry", table_name="campaign_items")
    op.drop_index("ix_items_lease_owner", table_name="campaign_items")
    op.drop_index("ix_items_job_state_index", table_name="campaign_items")
    op.drop_table("campaign_items")
