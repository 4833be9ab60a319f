"""The one interface every registry implements (SQL today; REST against a server next)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ensign.records import (
    ArtifactRef,
    ArtifactVersion,
    MetricPoint,
    Project,
    PromotionDecision,
    Run,
)

__all__ = ["MetricRow", "Registry", "RunBatch", "VersionSpec"]

#: ``(key, step, value, timestamp)`` of one metric point.
MetricRow = tuple[str, int, float, float]


@dataclass
class RunBatch:
    """Everything a run buffered since the last flush, written in one transaction.

    ``key`` names the batch for a server: a batch sent again with the same key (a retry
    whose first answer was lost) is written once.  The embedded registry needs none.
    """

    run_uuid: str
    metrics: list[MetricRow] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    refs: list[ArtifactRef] = field(default_factory=list)
    key: str | None = None

    def __bool__(self) -> bool:
        return bool(
            self.metrics
            or self.params
            or self.outputs
            or self.environment
            or self.tags
            or self.refs
        )


@dataclass(frozen=True)
class VersionSpec:
    """What a new (or forcibly replaced) version holds.

    Attributes:
        name: The version name; ``None`` asks for the next ``vN`` of the project and kind.
        manifest: Relative path -> ``{"digest", "size"}``; every blob must already be stored.
        stage: The first stage (``testing`` when ``None``).
        decision: A promotion decision to record on ``run`` in the same transaction; its
            ``version`` is filled in with the name given to the version.
    """

    name: str | None
    description: str | None = None
    tags: Sequence[str] = ()
    content: dict[str, Any] = field(default_factory=dict)
    run: str | None = None
    artifacts: Sequence[str] = ()
    manifest: dict[str, dict[str, Any]] = field(default_factory=dict)
    store_uri: str | None = None
    stage: str | None = None
    stage_reason: str | None = None
    stage_message: str | None = None
    decision: PromotionDecision | None = None


class Registry(Protocol):
    """Projects, runs, params, metrics, lineage refs, versions, stages and decisions."""

    def close(self) -> None:
        """Release connections."""

    def get_setting(self, key: str) -> str | None:
        """Return a store-wide setting, ``None`` when unset."""

    def remember_setting(self, key: str, value: str) -> str:
        """Set a store-wide setting unless it is set already; return the value in force."""

    def create_project(self, key: str, description: str | None = None) -> Project:
        """Create a project; :class:`~ensign.errors.Conflict` when the key is taken."""

    def ensure_project(self, key: str) -> Project:
        """Return a project, creating it when it does not exist."""

    def get_project(self, key_or_id: str) -> Project:
        """Return a project by key or id."""

    def list_projects(self) -> list[Project]:
        """Return every project."""

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

    def get_run(self, run_uuid: str) -> Run:
        """Return a run."""

    def list_runs(
        self,
        project: str,
        query: str | None = None,
        sort: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Run]:
        """Return runs of a project, newest first unless ``sort`` says otherwise."""

    def set_run_status(self, run_uuid: str, status: str, *, ended: bool = False) -> None:
        """Set a run's status; ``ended`` also stamps its end time."""

    def write_batch(self, batch: RunBatch) -> None:
        """Write a run's buffered metrics, params, outputs, tags and refs in one transaction."""

    def last_steps(self, run_uuid: str) -> dict[str, int]:
        """Return the highest step of each metric of a run."""

    def get_metrics(
        self, run_uuid: str, names: Sequence[str] | None = None
    ) -> dict[str, list[MetricPoint]]:
        """Return metric histories in step order."""

    def list_refs(self, run_uuid: str) -> list[ArtifactRef]:
        """Return a run's lineage refs."""

    def record_decision(self, run_uuid: str, decision: PromotionDecision) -> None:
        """Store a promotion decision on a run."""

    def list_decisions(self, run_uuid: str) -> list[PromotionDecision]:
        """Return a run's promotion decisions, oldest first."""

    def create_version(
        self, project: str, kind: str, spec: VersionSpec, *, force: bool = False
    ) -> ArtifactVersion:
        """Register a version atomically (next ``vN`` when unnamed)."""

    def get_version(self, project: str, kind: str, name: str) -> ArtifactVersion:
        """Return a version."""

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

    def patch_version(
        self, project: str, kind: str, name: str, data: dict[str, Any]
    ) -> ArtifactVersion:
        """Change description, tags, content or name of a version."""

    def delete_version(self, project: str, kind: str, name: str) -> None:
        """Delete a version and its stage history."""

    def transfer_version(
        self, project: str, kind: str, name: str, to_project: str
    ) -> ArtifactVersion:
        """Move a version to another project."""

    def stage_holder(self, project: str, kind: str, stage: str) -> ArtifactVersion | None:
        """Return the version that most recently entered ``stage``, if any holds it."""

    def referenced_digests(self) -> set[str]:
        """Return every blob digest a ref or version still names."""
