"""The SQL implementation of the registry (SQLite by default, PostgreSQL for scale)."""

from ensign.registry.sql.registry import SqlRegistry

__all__ = ["SqlRegistry"]
