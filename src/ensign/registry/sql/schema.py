"""The metadata schema: SQLAlchemy Core tables shared by SQLite and PostgreSQL.

JSON values are stored as text that ensign serialises itself, and times as seconds since
the epoch, so the same schema behaves the same way on both databases.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "counters",
    "decisions",
    "idempotency_keys",
    "jobs",
    "metadata",
    "metrics",
    "params",
    "projects",
    "pushes",
    "refs",
    "runs",
    "settings",
    "stage_conditions",
    "tokens",
    "versions",
]

metadata = sa.MetaData()

ID = sa.String(32)
NAME = sa.String(250)

settings = sa.Table(
    "ensign_settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("key", sa.String(128), nullable=False, unique=True),
    sa.Column("description", sa.Text),
    sa.Column("created_at", sa.Double, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("uuid", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", NAME),
    sa.Column("description", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("environment", sa.Text, nullable=False),
    sa.Column("outputs", sa.Text, nullable=False),
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("ended_at", sa.Double),
    sa.Column("is_promoted", sa.Boolean, nullable=False),
    sa.Index("ix_runs_project_started", "project_id", "started_at"),
)

params = sa.Table(
    "params",
    metadata,
    sa.Column("run_uuid", ID, sa.ForeignKey("runs.uuid"), primary_key=True),
    sa.Column("key", NAME, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

metrics = sa.Table(
    "metrics",
    metadata,
    sa.Column("run_uuid", ID, nullable=False),
    sa.Column("key", NAME, nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
    # NULL stands for NaN: SQLite cannot store NaN, PostgreSQL can but we keep one form.
    sa.Column("value", sa.Double),
    sa.Column("timestamp", sa.Double, nullable=False),
    sa.Index("ix_metrics_run_key_step", "run_uuid", "key", "step"),
)

refs = sa.Table(
    "artifact_refs",
    metadata,
    sa.Column("run_uuid", ID, sa.ForeignKey("runs.uuid"), primary_key=True),
    sa.Column("name", NAME, primary_key=True),
    sa.Column("is_input", sa.Boolean, primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("uri", sa.Text),
    sa.Column("digest", sa.String(64)),
    sa.Column("size", sa.BigInteger),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("store_uri", sa.Text),
    sa.Column("manifest", sa.Text, nullable=False),
    sa.Column("logged_at", sa.Double, nullable=False),
)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("run_uuid", ID),
    sa.Column("artifacts", sa.Text, nullable=False),
    sa.Column("manifest", sa.Text, nullable=False),
    sa.Column("store_uri", sa.Text),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("evaluation", sa.Text),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.UniqueConstraint("project_id", "kind", "name", name="uq_versions_project_kind_name"),
)

stage_conditions = sa.Table(
    "stage_conditions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version_id", ID, sa.ForeignKey("versions.id"), nullable=False, index=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("message", sa.Text),
    sa.Column("last_update_time", sa.Double, nullable=False),
    sa.Column("last_transition_time", sa.Double, nullable=False),
)

decisions = sa.Table(
    "promotion_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_uuid", ID, sa.ForeignKey("runs.uuid"), nullable=False, index=True),
    sa.Column("promoted", sa.Boolean, nullable=False),
    sa.Column("version", sa.String(128)),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("evaluated_at", sa.Double, nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
)

counters = sa.Table(
    "version_counters",
    metadata,
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("last_value", sa.BigInteger, nullable=False),
)

# --- the server (revision 0002): tokens, jobs, pushes, idempotency keys ---------------------

tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", ID, primary_key=True),
    # sha256 of the token: the token itself is shown once and never stored.
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    # NULL: every project (the administrator's token).
    sa.Column("project_id", ID, sa.ForeignKey("projects.id")),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("name", sa.String(128)),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("worker", sa.String(128)),
    sa.Column("lease_until", sa.Double),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Index("ix_jobs_status_created", "status", "created_at"),
)

pushes = sa.Table(
    "pushes",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("storage_uri", sa.Text, nullable=False),
    sa.Column("file_size", sa.BigInteger),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_message", sa.Text),
    sa.Column("passing", sa.Integer, nullable=False),
    sa.Column("failing", sa.Integer, nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("results", sa.Text, nullable=False),
    sa.Column("options", sa.Text, nullable=False),
    sa.Column("run_uuid", ID),
    sa.Column("version_name", sa.String(128)),
    sa.Column("author_id", ID),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Index("ix_pushes_project_created", "project_id", "created_at"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Index("ix_idempotency_keys_created", "created_at"),  # forgetting old answers
)
