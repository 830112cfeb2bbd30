"""The schema, as SQLAlchemy 2.x models. Alembic (migrations/) owns the database; these must match it.

Times are Unix seconds (floats) so that a simulated clock, SQLite and PostgreSQL all store the same
numbers. Money is recorded as prices ($/h) and times on each attempt; every cost is derived from them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    deadline_at: Mapped[float | None] = mapped_column(Float)
    budget_usd: Mapped[float | None] = mapped_column(Float)
    estimated_hours: Mapped[float] = mapped_column(Float)
    policy: Mapped[str] = mapped_column(String(64))
    checkpoint_uri: Mapped[str] = mapped_column(Text)
    cancel_requested_at: Mapped[float | None] = mapped_column(Float)
    # Set when the job came from elsewhere (a GpuJob's uid), so a resource is mirrored only once.
    external_ref: Mapped[str | None] = mapped_column(String(255), unique=True)
    # Several controllers may share a PostgreSQL store: a job is worked by the holder of its lease.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, index=True)
    # Bumped with every state change of the job, its tasks or attempts (not with progress): a loop
    # that saw this version knows the job as it is (see migrations/versions/0004).
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    # `orch status` pages the newest jobs first: an index in that order reads one page, not every job.
    __table_args__ = (Index("ix_jobs_created", "created_at", "id"),)


class TaskRow(Base):
    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("job_id", "index", name="uq_tasks_job_index"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    # Changed only through orchestrator.store.Store.transition (a guarded UPDATE).
    state: Mapped[str] = mapped_column(String(32), index=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    progress_committed: Mapped[float] = mapped_column(Float, default=0.0)
    progress_reported: Mapped[float] = mapped_column(Float, default=0.0)
    checkpoint_uri: Mapped[str] = mapped_column(Text)
    item_start: Mapped[int | None] = mapped_column(Integer)
    item_end: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[float] = mapped_column(Float)


class AttemptRow(Base):
    __tablename__ = "attempts"
    __table_args__ = (UniqueConstraint("task_id", "number", name="uq_attempts_task_number"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(64))
    zone: Mapped[str | None] = mapped_column(String(64))
    instance_type: Mapped[str] = mapped_column(String(64))
    market: Mapped[str] = mapped_column(String(16))
    price_per_hour: Mapped[float] = mapped_column(Float)
    on_demand_price_per_hour: Mapped[float] = mapped_column(Float)
    price_source: Mapped[str] = mapped_column(String(16))
    billing_increment_s: Mapped[int] = mapped_column(Integer)
    billing_minimum_s: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    outcome: Mapped[str | None] = mapped_column(String(32))
    instance_id: Mapped[str | None] = mapped_column(String(255))
    launched_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    productive_at: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    # True when no instance was ever billed (a launch refused by the provider).
    unbilled: Mapped[bool] = mapped_column(Boolean, default=False)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    progress_start: Mapped[float] = mapped_column(Float)
    progress_end: Mapped[float | None] = mapped_column(Float)
    last_checkpoint_at: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str | None] = mapped_column(Text)
    # A gang's nodes (`[resources] nodes`); each has its row in attempt_nodes once launched.
    nodes: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class AttemptNodeRow(Base):
    """One node of a gang attempt: what it cost is derived from its price and times (core/cost.py).

    Written only by orchestrator/store/gang.py: a row per rank when the gang launched, its end when the
    provider's listing shows the node gone.
    """

    __tablename__ = "attempt_nodes"
    __table_args__ = (UniqueConstraint("attempt_id", "rank", "launched_at", name="uq_attempt_nodes_span"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    attempt_id: Mapped[str] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    instance_id: Mapped[str | None] = mapped_column(String(255))
    zone: Mapped[str | None] = mapped_column(String(64))
    market: Mapped[str] = mapped_column(String(16))
    price_per_hour: Mapped[float] = mapped_column(Float)
    launched_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)


class EventRow(Base):
    """Append-only: rows are inserted in the same transaction as the change they describe."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[str | None] = mapped_column(String(36))
    attempt_id: Mapped[str | None] = mapped_column(String(36))
    at: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class PriceRow(Base):
    __tablename__ = "observed_prices"
    __table_args__ = (
        Index("ix_prices_lookup", "provider", "region", "instance_type", "market", "observed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(64))
    zone: Mapped[str | None] = mapped_column(String(64))
    instance_type: Mapped[str] = mapped_column(String(64))
    market: Mapped[str] = mapped_column(String(16))
    price_per_hour: Mapped[float] = mapped_column(Float)
    available: Mapped[bool | None] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16))
    observed_at: Mapped[float] = mapped_column(Float)


class ItemRow(Base):
    """One item of a campaign (`[array] items = ...`): its input, its lease, and its one result.

    Written only by orchestrator/store/items.py, whose docstring states the rules (leases, exactly once).
    """

    __tablename__ = "campaign_items"
    __table_args__ = (
        UniqueConstraint("job_id", "index", name="uq_items_job_index"),
        # Leasing (waiting items of a job by index), counts per state, and results in index order.
        Index("ix_items_job_state_index", "job_id", "state", "index"),
        Index("ix_items_lease_owner", "lease_owner"),  # release_worker
        Index("ix_items_state_expiry", "state", "lease_expires_at"),  # release_expired, across jobs
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    key: Mapped[str | None] = mapped_column(String(255))  # a FASTA id, a JSON object's "id": for listings
    payload: Mapped[str] = mapped_column(Text)  # the item as JSON text
    state: Mapped[str] = mapped_column(String(16))
    lease_owner: Mapped[str | None] = mapped_column(String(64))  # the worker's attempt id
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    leases: Mapped[int] = mapped_column(Integer)  # times leased; a lease's number tells it from later ones
    started_at: Mapped[float | None] = mapped_column(Float)  # work on it began under the current lease
    failures: Mapped[int] = mapped_column(Integer)  # counted failures (not out-of-memory ones)
    oom_gpu_memory_gb: Mapped[float | None] = mapped_column(Float)  # ran out of memory on a GPU this large
    reasons: Mapped[str | None] = mapped_column(Text)  # JSON list of the newest failure reasons
    result: Mapped[str | None] = mapped_column(Text)  # JSON text
    result_uri: Mapped[str | None] = mapped_column(Text)
    done_by: Mapped[str | None] = mapped_column(String(64))
    work_seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    done_at: Mapped[float | None] = mapped_column(Float)
