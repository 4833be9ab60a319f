"""Alembic migrations of the metadata schema, applied by ensign itself."""
