"""Alembic environment: ensign always passes an open connection in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from ensign.registry.sql.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
context.run_migrations()
