"""The few statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["insert_ignore"]


def insert_ignore(
    conn: sa.Connection, table: sa.Table, conflict_columns: Sequence[str]
) -> sa.Insert:
    """Return ``INSERT ... ON CONFLICT (columns) DO NOTHING`` for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(
            index_elements=list(conflict_columns)
        )
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
