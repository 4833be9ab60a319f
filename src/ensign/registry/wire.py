"""The JSON form of records on the wire, shared by ``ensign server`` and its REST client.

Times travel as ISO 8601 strings in UTC. Metric values that JSON cannot carry travel as
strings: ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``. Each ``*_to_wire`` has a
``*_from_wire`` that gives back an equal record.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from ensign import jsonio
from ensign.records import (
    ArtifactRef,
    ArtifactVersion,
    MetricPoint,
    Project,
    PromotionDecision,
    Run,
    StageCondition,
)
from ensign.registry.base import MetricRow, RunBatch, VersionSpec

__all__ = [
    "batch_from_wire",
    "batch_to_wire",
    "decision_from_wire",
    "decision_to_wire",
    "float_from_wire",
    "float_to_wire",
    "metrics_from_wire",
    "metrics_to_wire",
    "project_from_wire",
    "project_to_wire",
    "ref_from_wire",
    "ref_to_wire",
    "run_from_wire",
    "run_to_wire",
    "spec_from_wire",
    "spec_to_wire",
    "version_from_wire",
    "version_to_wire",
]

_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def float_to_wire(value: float) -> float | str:
    """Return a float JSON can carry: NaN and infinities become strings."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def float_from_wire(value: float | int | str) -> float:
    """Return the float of :func:`float_to_wire`'s output."""
    if isinstance(value, str):
        return _SPECIAL[value]
    return float(value)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _required_time(value: str) -> datetime:
    parsed = _parse_time(value)
    assert parsed is not None
    return parsed


def project_to_wire(project: Project) -> dict[str, Any]:
    """Return a project as JSON."""
    return {
        "id": project.id,
        "key": project.key,
        "description": project.description,
        "created_at": _time(project.created_at),
    }


def project_from_wire(data: dict[str, Any]) -> Project:
    """Return the project of :func:`project_to_wire`'s output."""
    return Project(data["id"], data["key"], data["description"], _required_time(data["created_at"]))


def run_to_wire(run: Run) -> dict[str, Any]:
    """Return a run as JSON."""
    return {
        "uuid": run.uuid,
        "project": run.project,
        "name": run.name,
        "status": run.status,
        "params": jsonio.to_jsonable(run.params),
        "tags": list(run.tags),
        "environment": jsonio.to_jsonable(run.environment),
        "started_at": _time(run.started_at),
        "ended_at": _time(run.ended_at),
        "is_promoted": run.is_promoted,
        "description": run.description,
        "outputs": jsonio.to_jsonable(run.outputs),
    }


def run_from_wire(data: dict[str, Any]) -> Run:
    """Return the run of :func:`run_to_wire`'s output."""
    return Run(
        uuid=data["uuid"],
        project=data["project"],
        name=data["name"],
        status=data["status"],
        params=data["params"],
        tags=data["tags"],
        environment=data["environment"],
        started_at=_required_time(data["started_at"]),
        ended_at=_parse_time(data["ended_at"]),
        is_promoted=data["is_promoted"],
        description=data["description"],
        outputs=data["outputs"],
    )


def ref_to_wire(ref: ArtifactRef) -> dict[str, Any]:
    """Return a lineage ref as JSON."""
    return {
        "run": ref.run,
        "name": ref.name,
        "kind": ref.kind,
        "uri": ref.uri,
        "digest": ref.digest,
        "size": ref.size,
        "is_input": ref.is_input,
        "summary": jsonio.to_jsonable(ref.summary),
        "store_uri": ref.store_uri,
        "manifest": ref.manifest,
    }


def ref_from_wire(data: dict[str, Any]) -> ArtifactRef:
    """Return the ref of :func:`ref_to_wire`'s output."""
    return ArtifactRef(
        run=data["run"],
        name=data["name"],
        kind=data["kind"],
        uri=data["uri"],
        digest=data["digest"],
        size=data["size"],
        is_input=data["is_input"],
        summary=data["summary"],
        store_uri=data["store_uri"],
        manifest=data["manifest"],
    )


def decision_to_wire(decision: PromotionDecision) -> dict[str, Any]:
    """Return a promotion decision as JSON."""
    return {
        "promoted": decision.promoted,
        "version": decision.version,
        "reasons": list(decision.reasons),
        "evaluated_at": _time(decision.evaluated_at),
        "dry_run": decision.dry_run,
    }


def decision_from_wire(data: dict[str, Any]) -> PromotionDecision:
    """Return the decision of :func:`decision_to_wire`'s output."""
    return PromotionDecision(
        promoted=data["promoted"],
        version=data["version"],
        reasons=data["reasons"],
        evaluated_at=_required_time(data["evaluated_at"]),
        dry_run=data["dry_run"],
    )


def _condition_to_wire(condition: StageCondition) -> dict[str, Any]:
    return {
        "type": condition.type,
        "status": condition.status,
        "reason": condition.reason,
        "message": condition.message,
        "last_update_time": _time(condition.last_update_time),
        "last_transition_time": _time(condition.last_transition_time),
    }


def _condition_from_wire(data: dict[str, Any]) -> StageCondition:
    return StageCondition(
        type=data["type"],
        status=data["status"],
        reason=data["reason"],
        message=data["message"],
        last_update_time=_required_time(data["last_update_time"]),
        last_transition_time=_required_time(data["last_transition_time"]),
    )


def version_to_wire(version: ArtifactVersion) -> dict[str, Any]:
    """Return a version as JSON."""
    return {
        "project": version.project,
        "kind": version.kind,
        "name": version.name,
        "description": version.description,
        "tags": list(version.tags),
        "content": jsonio.to_jsonable(version.content),
        "run": version.run,
        "artifacts": list(version.artifacts),
        "manifest": version.manifest,
        "stage": version.stage,
        "stage_conditions": [_condition_to_wire(c) for c in version.stage_conditions],
        "evaluation": jsonio.to_jsonable(version.evaluation),
        "created_at": _time(version.created_at),
        "updated_at": _time(version.updated_at),
        "store_uri": version.store_uri,
    }


def version_from_wire(data: dict[str, Any]) -> ArtifactVersion:
    """Return the version of :func:`version_to_wire`'s output."""
    return ArtifactVersion(
        project=data["project"],
        kind=data["kind"],
        name=data["name"],
        description=data["description"],
        tags=data["tags"],
        content=data["content"],
        run=data["run"],
        artifacts=data["artifacts"],
        manifest=data["manifest"],
        stage=data["stage"],
        stage_conditions=[_condition_from_wire(c) for c in data["stage_conditions"]],
        evaluation=data["evaluation"],
        created_at=_required_time(data["created_at"]),
        updated_at=_required_time(data["updated_at"]),
        store_uri=data["store_uri"],
    )


def spec_to_wire(spec: VersionSpec) -> dict[str, Any]:
    """Return what a new version holds as JSON."""
    return {
        "name": spec.name,
        "description": spec.description,
        "tags": list(spec.tags),
        "content": jsonio.to_jsonable(spec.content),
        "run": spec.run,
        "artifacts": list(spec.artifacts),
        "manifest": spec.manifest,
        "store_uri": spec.store_uri,
        "stage": spec.stage,
        "stage_reason": spec.stage_reason,
        "stage_message": spec.stage_message,
        "decision": None if spec.decision is None else decision_to_wire(spec.decision),
    }


def spec_from_wire(data: dict[str, Any]) -> VersionSpec:
    """Return the spec of :func:`spec_to_wire`'s output."""
    decision = data.get("decision")
    return VersionSpec(
        name=data.get("name"),
        description=data.get("description"),
        tags=list(data.get("tags") or ()),
        content=dict(data.get("content") or {}),
        run=data.get("run"),
        artifacts=list(data.get("artifacts") or ()),
        manifest=dict(data.get("manifest") or {}),
        store_uri=data.get("store_uri"),
        stage=data.get("stage"),
        stage_reason=data.get("stage_reason"),
        stage_message=data.get("stage_message"),
        decision=None if decision is None else decision_from_wire(decision),
    )


def metrics_to_wire(history: dict[str, list[MetricPoint]]) -> dict[str, list[list[Any]]]:
    """Return metric histories as ``{name: [[step, value, timestamp], ...]}``."""
    return {
        name: [[p.step, float_to_wire(p.value), p.timestamp] for p in points]
        for name, points in history.items()
    }


def metrics_from_wire(data: dict[str, list[list[Any]]]) -> dict[str, list[MetricPoint]]:
    """Return the histories of :func:`metrics_to_wire`'s output."""
    return {
        name: [MetricPoint(int(s), float_from_wire(v), float(t)) for s, v, t in points]
        for name, points in data.items()
    }


def batch_to_wire(batch: RunBatch) -> dict[str, Any]:
    """Return a run's buffered writes as JSON (metrics as ``[key, step, value, ts]`` rows)."""
    return {
        "metrics": [[k, s, float_to_wire(v), t] for k, s, v, t in batch.metrics],
        "params": jsonio.to_jsonable(batch.params),
        "outputs": jsonio.to_jsonable(batch.outputs),
        "environment": jsonio.to_jsonable(batch.environment),
        "tags": list(batch.tags),
        "refs": [ref_to_wire(r) for r in batch.refs],
    }


def batch_from_wire(run_uuid: str, data: dict[str, Any]) -> RunBatch:
    """Return the batch of :func:`batch_to_wire`'s output, for ``run_uuid``."""
    rows: list[MetricRow] = [
        (str(k), int(s), float_from_wire(v), float(t)) for k, s, v, t in data.get("metrics", [])
    ]
    return RunBatch(
        run_uuid=run_uuid,
        metrics=rows,
        params=dict(data.get("params") or {}),
        outputs=dict(data.get("outputs") or {}),
        environment=dict(data.get("environment") or {}),
        tags=list(data.get("tags") or []),
        refs=[ref_from_wire(r) for r in data.get("refs", [])],
    )
