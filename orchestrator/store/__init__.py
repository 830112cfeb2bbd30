"""The store: jobs, tasks, attempts, events and observed prices, in SQLite or PostgreSQL."""

from orchestrator.store.engine import SchemaError, database_url, make_engine, orch_home
from orchestrator.store.repo import Store

__all__ = ["SchemaError", "Store", "database_url", "make_engine", "orch_home"]
