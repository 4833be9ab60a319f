"""The first schema: projects, runs, params, metrics, refs, versions, stages, decisions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(32)
NAME = sa.String(250)


def upgrade() -> None:
    """Create every table of the first schema."""
    op.create_table(
        "ensign_settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "projects",
        sa.Column("id", ID, primary_key=True),
        sa.Column("key", sa.String(128), nullable=False, unique=True),
        sa.Column("description", sa.Text),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_table(
        "runs",
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
    )
    op.create_index("ix_runs_project_started", "runs", ["project_id", "started_at"])
    op.create_table(
        "params",
        sa.Column("run_uuid", ID, sa.ForeignKey("runs.uuid"), primary_key=True),
        sa.Column("key", NAME, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "metrics",
        sa.Column("run_uuid", ID, nullable=False),
        sa.Column("key", NAME, nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Double),
        sa.Column("timestamp", sa.Double, nullable=False),
    )
    op.create_index("ix_metrics_run_key_step", "metrics", ["run_uuid", "key", "step"])
    op.create_table(
        "artifact_refs",
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
    op.create_table(
        "versions",
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
    op.create_table(
        "stage_conditions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version_id", ID, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("message", sa.Text),
        sa.Column("last_update_time", sa.Double, nullable=False),
        sa.Column("last_transition_time", sa.Double, nullable=False),
    )
    op.create_index("ix_stage_conditions_version_id", "stage_conditions", ["version_id"])
    op.create_table(
        "promotion_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_uuid", ID, sa.ForeignKey("runs.uuid"), nullable=False),
        sa.Column("promoted", sa.Boolean, nullable=False),
        sa.Column("version", sa.String(128)),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("evaluated_at", sa.Double, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
    )
    op.create_index("ix_promotion_decisions_run_uuid", "promotion_decisions", ["run_uuid"])
    op.create_table(
        "version_counters",
        sa.Column("project_id", ID, sa.ForeignKey("projects.id"), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("last_value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    """Drop every table of the first schema."""
    for table in (
        "version_counters",
        "promotion_decisions",
        "stage_conditions",
        "versions",
        "artifact_refs",
        "metrics",
        "params",
        "runs",
        "projects",
        "ensign_settings",
    ):
        op.drop_table(table)
