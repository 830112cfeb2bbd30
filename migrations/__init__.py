"""Alembic migrations for orch's store (numbered, each with a real downgrade)."""
