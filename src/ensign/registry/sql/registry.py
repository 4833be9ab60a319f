"""``SqlRegistry``: the :class:`~ensign.registry.base.Registry` on SQLAlchemy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ensign.names import check_project_key
from ensign.records import (
    ArtifactRef,
    ArtifactVersion,
    MetricPoint,
    Project,
    PromotionDecision,
    Run,
)
from ensign.registry.base import RunBatch, VersionSpec
from ensign.registry.sql import runs as run_ops
from ensign.registry.sql import versions as version_ops
from ensign.registry.sql.dialect import insert_ignore
from ensign.registry.sql.engine import create_engine, upgrade, write_transaction
from ensign.registry.sql.schema import settings

__all__ = ["SqlRegistry"]


class SqlRegistry:
    """The registry on a SQL database: SQLite (embedded default) or PostgreSQL.

    Args:
        url: A SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``).
        migrate: Apply pending migrations on open (the default).
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = create_engine(url)
        if migrate:
            upgrade(self.engine)

    def __repr__(self) -> str:
        return f"SqlRegistry({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def _read(self) -> sa.engine.Connection:
        return self.engine.connect()

    # settings -----------------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        """Return a store-wide setting, ``None`` when unset."""
        with self._read() as conn:
            return conn.execute(sa.select(settings.c.value).where(settings.c.key == key)).scalar()

    def remember_setting(self, key: str, value: str) -> str:
        """Set a store-wide setting unless it is set already; return the value in force."""
        with write_transaction(self.engine) as conn:
            conn.execute(insert_ignore(conn, settings, ["key"]).values(key=key, value=value))
            stored = conn.execute(sa.select(settings.c.value).where(settings.c.key == key))
            return str(stored.scalar_one())

    # projects -----------------------------------------------------------------------------

    def create_project(self, key: str, description: str | None = None) -> Project:
        """Create a project; :class:`~ensign.errors.Conflict` when the key is taken."""
        check_project_key(key)
        with write_transaction(self.engine) as conn:
            return run_ops.create_project(conn, key, description)

    def ensure_project(self, key: str) -> Project:
        """Return a project, creating it when it does not exist."""
        check_project_key(key)
        with write_transaction(self.engine) as conn:
            return run_ops.ensure_project(conn, key)

    def get_project(self, key_or_id: str) -> Project:
        """Return a project by key or id."""
        with self._read() as conn:
            return run_ops.get_project(conn, key_or_id)

    def list_projects(self) -> list[Project]:
        """Return every project, by key."""
        with self._read() as conn:
            return run_ops.list_projects(conn)

    # runs ---------------------------------------------------------------------------------

    def create_run(
        self,
        project: str,
        *,
        name: str | None = None,
        description: str | None = None,
        tags: Sequence[str] = (),
        environment: dict[str, Any] | None = None,
        run_uuid: str | None = None,
    ) -> Run:
        """Create a running run in ``project`` (created when missing).

        ``run_uuid`` chooses the run's id (32 hex characters), so that a retried or
        replayed create can never make two runs; :class:`~ensign.errors.Conflict` when
        a run already has it.
        """
        check_project_key(project)
        with write_transaction(self.engine) as conn:
            return run_ops.create_run(
                conn,
                project,
                name=name,
                description=description,
                tags=tags,
                environment=environment or {},
                run_uuid=run_uuid,
            )

    def get_run(self, run_uuid: str) -> Run:
        """Return a run."""
        with self._read() as conn:
            return run_ops.get_run(conn, run_uuid)

    def list_runs(
        self,
        project: str,
        query: str | None = None,
        sort: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Run]:
        """Return runs of a project, newest first unless ``sort`` says otherwise."""
        with self._read() as conn:
            return run_ops.list_runs(conn, project, query, sort, limit, offset)

    def set_run_status(self, run_uuid: str, status: str, *, ended: bool = False) -> None:
        """Set a run's status; ``ended`` also stamps its end time."""
        with write_transaction(self.engine) as conn:
            run_ops.set_run_status(conn, run_uuid, status, ended)

    def write_batch(self, batch: RunBatch) -> None:
        """Write a run's buffered metrics, params, outputs, tags and refs in one transaction."""
        if not batch:
            return
        with write_transaction(self.engine) as conn:
            run_ops.apply_batch(conn, batch)

    def last_steps(self, run_uuid: str) -> dict[str, int]:
        """Return the highest step of each metric of a run."""
        with self._read() as conn:
            return run_ops.last_steps(conn, run_uuid)

    def get_metrics(
        self, run_uuid: str, names: Sequence[str] | None = None
    ) -> dict[str, list[MetricPoint]]:
        """Return metric histories in step order."""
        with self._read() as conn:
            return run_ops.get_metrics(conn, run_uuid, names)

    def list_refs(self, run_uuid: str) -> list[ArtifactRef]:
        """Return a run's lineage refs, inputs first."""
        with self._read() as conn:
            return run_ops.list_refs(conn, run_uuid)

    def record_decision(self, run_uuid: str, decision: PromotionDecision) -> None:
        """Store a promotion decision on a run."""
        with write_transaction(self.engine) as conn:
            run_ops.record_decision(conn, run_uuid, decision)

    def list_decisions(self, run_uuid: str) -> list[PromotionDecision]:
        """Return a run's promotion decisions, oldest first."""
        with self._read() as conn:
            return run_ops.list_decisions(conn, run_uuid)

    # versions -----------------------------------------------------------------------------

    def create_version(
        self, project: str, kind: str, spec: VersionSpec, *, force: bool = False
    ) -> ArtifactVersion:
        """Register a version atomically (next ``vN`` when unnamed)."""
        check_project_key(project)
        with write_transaction(self.engine) as conn:
            return version_ops.create_version(conn, project, kind, spec, force)

    def get_version(self, project: str, kind: str, name: str) -> ArtifactVersion:
        """Return a version."""
        with self._read() as conn:
            return version_ops.get_version(conn, project, kind, name)

    def list_versions(
        self,
        project: str,
        kind: str,
        query: str | None = None,
        sort: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[ArtifactVersion]:
        """Return versions of a project and kind, newest first unless ``sort`` says otherwise."""
        with self._read() as conn:
            return version_ops.list_versions(conn, project, kind, query, sort, limit, offset)

    def stage_version(
        self,
        project: str,
        kind: str,
        name: str,
        stage: str,
        reason: str | None = None,
        message: str | None = None,
    ) -> ArtifactVersion:
        """Move a version to ``stage``, keeping the history."""
        with write_transaction(self.engine) as conn:
            return version_ops.stage_version(conn, project, kind, name, stage, reason, message)

    def patch_version(
        self, project: str, kind: str, name: str, data: dict[str, Any]
    ) -> ArtifactVersion:
        """Change description, tags, content or name of a version."""
        with write_transaction(self.engine) as conn:
            return version_ops.patch_version(conn, project, kind, name, data)

    def delete_version(self, project: str, kind: str, name: str) -> None:
        """Delete a version and its stage history."""
        with write_transaction(self.engine) as conn:
            version_ops.delete_version(conn, project, kind, name)

    def transfer_version(
        self, project: str, kind: str, name: str, to_project: str
    ) -> ArtifactVersion:
        """Move a version to another project."""
        check_project_key(to_project)
        with write_transaction(self.engine) as conn:
            return version_ops.transfer_version(conn, project, kind, name, to_project)

    def stage_holder(self, project: str, kind: str, stage: str) -> ArtifactVersion | None:
        """Return the version that most recently entered ``stage``, if any holds it."""
        with self._read() as conn:
            return version_ops.stage_holder(conn, project, kind, stage)

    def referenced_digests(self) -> set[str]:
        """Return every blob digest a ref or version still names."""
        with self._read() as conn:
            return version_ops.referenced_digests(conn)
