"""The records ensign returns: frozen dataclasses named after the nouns of the domain."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ensign.errors import ConfigurationError, InvalidStage

__all__ = [
    "ArtifactRef",
    "ArtifactVersion",
    "MetricPoint",
    "Project",
    "PromotionDecision",
    "Run",
    "RunStatus",
    "StageCondition",
    "Stages",
    "VersionKind",
    "parse_kind",
    "parse_stage",
    "parse_status",
]


class Stages(str, enum.Enum):
    """The stages an artifact or model version can be in; any stage may follow any stage."""

    TESTING = "testing"
    STAGING = "staging"
    PRODUCTION = "production"
    DISABLED = "disabled"

    def __str__(self) -> str:
        return self.value


def parse_stage(stage: str | Stages) -> Stages:
    """Return the :class:`Stages` member for ``stage``.

    Raises:
        InvalidStage: ``stage`` is not a known stage; the message lists the valid ones.
    """
    if isinstance(stage, Stages):
        return stage
    try:
        return Stages(str(stage).lower())
    except ValueError:
        raise InvalidStage(str(stage), [s.value for s in Stages]) from None


class RunStatus(str, enum.Enum):
    """Lifecycle of a run."""

    CREATED = "created"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


class VersionKind(str, enum.Enum):
    """What a version holds: a generic artifact or a model."""

    ARTIFACT = "artifact"
    MODEL = "model"

    def __str__(self) -> str:
        return self.value


def parse_kind(kind: str | VersionKind) -> VersionKind:
    """Return the :class:`VersionKind` member for ``kind``.

    Raises:
        ConfigurationError: ``kind`` is neither ``artifact`` nor ``model``.
    """
    try:
        return VersionKind(str(kind))
    except ValueError:
        valid = ", ".join(k.value for k in VersionKind)
        raise ConfigurationError(f"unknown version kind {kind!r}; valid kinds: {valid}") from None


def parse_status(status: str | RunStatus) -> RunStatus:
    """Return the :class:`RunStatus` member for ``status``.

    Raises:
        ConfigurationError: ``status`` is not a run status.
    """
    try:
        return RunStatus(str(status))
    except ValueError:
        valid = ", ".join(s.value for s in RunStatus)
        raise ConfigurationError(
            f"unknown run status {status!r}; valid statuses: {valid}"
        ) from None


@dataclass(frozen=True)
class Project:
    """A project: the namespace of runs and versions.

    Attributes:
        id: 32 hex characters.
        key: ``owner/name`` or ``name``.
        description: Free text.
        created_at: When it was created (UTC).
    """

    id: str
    key: str
    description: str | None
    created_at: datetime


@dataclass(frozen=True)
class Run:
    """A tracked run.

    Attributes:
        uuid: 32 hex characters.
        project: The project key.
        name: The run's name.
        status: One of :class:`RunStatus`' values.
        params: Logged parameters (inputs).
        tags: Tags.
        environment: Python, packages, host, git commit and dirty flag.
        started_at: When the run started (UTC).
        ended_at: When it ended, or ``None`` while it runs.
        is_promoted: Whether a version was registered from it.
        description: Free text.
        outputs: Logged outputs (``log_outputs``).
    """

    uuid: str
    project: str
    name: str | None
    status: str
    params: dict[str, Any]
    tags: list[str]
    environment: dict[str, Any]
    started_at: datetime
    ended_at: datetime | None
    is_promoted: bool
    description: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactRef:
    """A lineage entry of a run: something it consumed (``is_input``) or produced.

    Attributes:
        run: The run's uuid.
        name: Unique per run and direction.
        kind: ``model``, ``data``, ``file``, ``dir``, ``checkpoint``, ``env``, ``coderef``, ...
        uri: Where the thing was when it was logged (a path or URL), if anywhere.
        digest: sha256 of the bytes (for a folder, of its manifest), if known.
        size: Bytes (for a folder, the sum), if known.
        is_input: Whether the run consumed it.
        summary: Free-form details.
        store_uri: The blob store that holds its bytes, when they were uploaded.
        manifest: For an uploaded ref: relative path -> ``{"digest", "size"}``.
    """

    run: str
    name: str
    kind: str
    uri: str | None
    digest: str | None
    size: int | None
    is_input: bool
    summary: dict[str, Any]
    store_uri: str | None = None
    manifest: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class StageCondition:
    """One stage change in a version's history (the condition shape of Kubernetes-style APIs)."""

    type: str
    status: str
    reason: str | None
    message: str | None
    last_update_time: datetime
    last_transition_time: datetime


@dataclass(frozen=True)
class ArtifactVersion:
    """A registered, versioned artifact or model with its lineage.

    Attributes:
        project: The project key.
        kind: ``artifact`` or ``model``.
        name: ``v3``, ``rc2``, ...: unique per project and kind.
        description: Free text.
        tags: Tags.
        content: A JSON object.
        run: The producing run's uuid, if any.
        artifacts: Names of the producing run's lineage entries this version carries.
        manifest: Relative path -> ``{"digest", "size"}`` of every file it holds.
        stage: The current stage.
        stage_conditions: Every stage change, oldest first.
        evaluation: Goal evaluation results, if the version has goals.
        created_at: When it was registered (UTC).
        updated_at: When it last changed (UTC).
        store_uri: The blob store that holds the manifest's bytes.
    """

    project: str
    kind: str
    name: str
    description: str | None
    tags: list[str]
    content: dict[str, Any]
    run: str | None
    artifacts: list[str]
    manifest: dict[str, dict[str, Any]]
    stage: str
    stage_conditions: list[StageCondition]
    evaluation: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    store_uri: str | None = None


@dataclass(frozen=True)
class MetricPoint:
    """One logged value of a metric.  NaN and infinities are stored as such."""

    step: int
    value: float
    timestamp: float


@dataclass(frozen=True)
class PromotionDecision:
    """The outcome of evaluating a promotion, recorded on the run whether or not it promoted.

    Attributes:
        promoted: Whether the conditions held (and, unless a dry run, a version was made).
        version: The version's name when one was registered.
        reasons: One line per condition checked, saying what was compared.
        evaluated_at: When (UTC).
        dry_run: Whether it came from ``evaluate_promotion``.
    """

    promoted: bool
    version: str | None
    reasons: list[str]
    evaluated_at: datetime
    dry_run: bool = False
