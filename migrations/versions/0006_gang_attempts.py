"""gang attempts: how many nodes an attempt holds, and one row per node

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 10:45:00

A gang (`[resources] nodes = N`) runs one attempt on N instances launched together. `attempts.nodes`
says how many (1 for every attempt before this revision); `attempt_nodes` holds each node's own
record (rank, instance, zone, market, price, launch and end), because the nodes of one gang can end
at different times (one reclaimed, the others terminated a little later) and, where the job allows
mixed markets, at different prices. Money stays derived (orchestrator.core.cost): these are the
prices and times it is derived from.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("nodes", sa.Integer(), nullable=False, server_default="1"))
    op.create_table(
        "attempt_nodes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("attempt_id", sa.String(36), sa.ForeignKey("attempts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(255), nullable=True),
        sa.Column("zone", sa.String(64), nullable=True),
        sa.Column("market", sa.String(16), nullable=False),
        sa.Column("price_per_hour", sa.Float(), nullable=False),
        sa.Column("launched_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        # A rank may have several spans (an elastic gang that grows back), never two from one launch.
        sa.UniqueConstraint("attempt_id", "rank", "launched_at", name="uq_attempt_nodes_span"),
    )
    op.create_index("ix_attempt_nodes_attempt_id", "attempt_nodes", ["attempt_id"])


def downgrade() -> None:
    op.drop_index("ix_attempt_nodes_attempt_id", table_name="attempt_nodes")
    op.drop_table("attempt_nodes")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("nodes")
