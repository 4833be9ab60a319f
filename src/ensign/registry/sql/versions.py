"""SQL operations on artifact and model versions and their stage history."""

from __future__ import annotations

import dataclasses
import time
import uuid as uuidlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ensign import jsonio
from ensign.errors import InvalidQuery, VersionExists, VersionNotFound
from ensign.names import check_version_name
from ensign.records import ArtifactVersion, StageCondition, Stages, parse_kind, parse_stage
from ensign.registry.base import VersionSpec
from ensign.registry.query import parse_query, parse_sort
from ensign.registry.sql.dialect import insert_ignore
from ensign.registry.sql.runs import ensure_project, project_row, record_decision
from ensign.registry.sql.schema import counters, projects, refs, stage_conditions, versions

__all__ = [
    "VERSION_QUERY_FIELDS",
    "create_version",
    "delete_version",
    "get_version",
    "list_versions",
    "patch_version",
    "referenced_digests",
    "stage_holder",
    "stage_version",
    "transfer_version",
]

VERSION_QUERY_FIELDS = frozenset({"name", "stage", "tags", "run"})
_VERSION_SORT_FIELDS = frozenset({"created_at", "updated_at", "name", "stage"})
_PATCHABLE = frozenset({"description", "tags", "content", "name"})


def _kind(kind: str) -> str:
    return parse_kind(kind).value


def _select() -> sa.Select[Any]:
    return sa.select(versions, projects.c.key.label("project_key")).join(
        projects, projects.c.id == versions.c.project_id
    )


def _conditions(conn: sa.Connection, ids: Sequence[str]) -> dict[str, list[StageCondition]]:
    found: dict[str, list[StageCondition]] = {i: [] for i in ids}
    if not ids:
        return found
    rows = conn.execute(
        sa.select(stage_conditions)
        .where(stage_conditions.c.version_id.in_(list(ids)))
        .order_by(stage_conditions.c.id)
    )
    for r in rows:
        updated = jsonio.from_epoch(r.last_update_time)
        transitioned = jsonio.from_epoch(r.last_transition_time)
        assert updated is not None
        assert transitioned is not None
        found[r.version_id].append(
            StageCondition(r.type, r.status, r.reason, r.message, updated, transitioned)
        )
    return found


def _version(row: sa.Row[Any], history: list[StageCondition]) -> ArtifactVersion:
    created = jsonio.from_epoch(row.created_at)
    updated = jsonio.from_epoch(row.updated_at)
    assert created is not None
    assert updated is not None
    return ArtifactVersion(
        project=row.project_key,
        kind=row.kind,
        name=row.name,
        description=row.description,
        tags=jsonio.loads(row.tags),
        content=jsonio.loads(row.content),
        run=row.run_uuid,
        artifacts=jsonio.loads(row.artifacts),
        manifest=jsonio.loads(row.manifest),
        stage=row.stage,
        stage_conditions=history,
        evaluation=jsonio.loads(row.evaluation),
        created_at=created,
        updated_at=updated,
        store_uri=row.store_uri,
    )


def _row(conn: sa.Connection, project: str, kind: str, name: str) -> sa.Row[Any]:
    project_id = project_row(conn, project).id
    row = conn.execute(
        _select().where(
            versions.c.project_id == project_id,
            versions.c.kind == _kind(kind),
            versions.c.name == name,
        )
    ).first()
    if row is None:
        raise VersionNotFound(f"{_kind(kind)} version {name!r} does not exist in {project!r}")
    return row


def get_version(conn: sa.Connection, project: str, kind: str, name: str) -> ArtifactVersion:
    """Return a version.

    Raises:
        VersionNotFound: when the project has no such version of that kind.
    """
    row = _row(conn, project, kind, name)
    return _version(row, _conditions(conn, [row.id])[row.id])


def _next_name(conn: sa.Connection, project_id: str, kind: str) -> str:
    """Take the next free ``vN``; the counter row's lock serialises concurrent promoters."""
    key = (counters.c.project_id == project_id, counters.c.kind == kind)
    conn.execute(
        insert_ignore(conn, counters, ["project_id", "kind"]).values(
            project_id=project_id, kind=kind, last_value=0
        )
    )
    while True:
        number = conn.execute(
            counters.update()
            .where(*key)
            .values(last_value=counters.c.last_value + 1)
            .returning(counters.c.last_value)
        ).scalar_one()
        name = f"v{number}"
        taken = conn.execute(
            sa.select(versions.c.id).where(
                versions.c.project_id == project_id,
                versions.c.kind == kind,
                versions.c.name == name,
            )
        ).first()
        if taken is None:
            return name


def _add_condition(
    conn: sa.Connection,
    version_id: str,
    stage: Stages,
    reason: str | None,
    message: str | None,
    now: float,
) -> None:
    conn.execute(
        stage_conditions.insert().values(
            version_id=version_id,
            type=stage.value,
            status="True",
            reason=reason,
            message=message,
            last_update_time=now,
            last_transition_time=now,
        )
    )


def create_version(
    conn: sa.Connection, project: str, kind: str, spec: VersionSpec, force: bool
) -> ArtifactVersion:
    """Register a version in the caller's (write) transaction.

    Raises:
        VersionExists: when the name is taken and ``force`` is false.
    """
    kind = _kind(kind)
    project_id = ensure_project(conn, project).id
    stage = parse_stage(spec.stage or Stages.TESTING)
    name = check_version_name(spec.name) if spec.name else _next_name(conn, project_id, kind)
    now = time.time()
    fields: dict[str, Any] = {
        "description": spec.description,
        "tags": jsonio.dumps(list(spec.tags)),
        "content": jsonio.dumps(spec.content),
        "run_uuid": spec.run,
        "artifacts": jsonio.dumps(list(spec.artifacts)),
        "manifest": jsonio.dumps(spec.manifest),
        "store_uri": spec.store_uri,
        "updated_at": now,
    }
    existing = conn.execute(
        sa.select(versions.c.id, versions.c.stage).where(
            versions.c.project_id == project_id, versions.c.kind == kind, versions.c.name == name
        )
    ).first()
    if existing is not None and not force:
        raise VersionExists(
            f"{kind} version {name!r} already exists in {project!r}; pass force=True to replace it"
        )
    if existing is not None:
        version_id = existing.id
        conn.execute(versions.update().where(versions.c.id == version_id).values(**fields))
        if spec.stage is not None and stage.value != existing.stage:
            conn.execute(
                versions.update().where(versions.c.id == version_id).values(stage=stage.value)
            )
            _add_condition(conn, version_id, stage, spec.stage_reason, spec.stage_message, now)
    else:
        version_id = uuidlib.uuid4().hex
        conn.execute(
            versions.insert().values(
                id=version_id,
                project_id=project_id,
                kind=kind,
                name=name,
                stage=stage.value,
                evaluation=None,
                created_at=now,
                **fields,
            )
        )
        _add_condition(conn, version_id, stage, spec.stage_reason, spec.stage_message, now)
    if spec.decision is not None and spec.run is not None:
        record_decision(conn, spec.run, dataclasses.replace(spec.decision, version=name))
    return get_version(conn, project, kind, name)


def list_versions(
    conn: sa.Connection,
    project: str,
    kind: str,
    query: str | None,
    sort: str | None,
    limit: int,
    offset: int,
) -> list[ArtifactVersion]:
    """Return versions filtered by ``query`` and ordered by ``sort`` (newest first)."""
    project_id = project_row(conn, project).id
    stmt = _select().where(versions.c.project_id == project_id, versions.c.kind == _kind(kind))
    for term in parse_query(query, VERSION_QUERY_FIELDS):
        if term.field == "tags":
            clause = sa.or_(
                *(versions.c.tags.contains(jsonio.dumps(v), autoescape=True) for v in term.values)
            )
        elif term.field == "stage":
            clause = versions.c.stage.in_([parse_stage(v).value for v in term.values])
        elif term.field == "run":
            clause = versions.c.run_uuid.in_(term.values)
        else:
            clause = versions.c[term.field].in_(term.values)
        stmt = stmt.where(sa.not_(clause) if term.negate else clause)
    order = parse_sort(sort, _VERSION_SORT_FIELDS, "-created_at")
    column = versions.c[order.field]
    tiebreak = versions.c.id.desc() if order.descending else versions.c.id.asc()
    stmt = stmt.order_by(column.desc() if order.descending else column.asc(), tiebreak)
    if limit < 0 or offset < 0:
        raise InvalidQuery("limit and offset must not be negative")
    rows = conn.execute(stmt.limit(limit).offset(offset)).all()
    history = _conditions(conn, [r.id for r in rows])
    return [_version(r, history[r.id]) for r in rows]


def stage_version(
    conn: sa.Connection,
    project: str,
    kind: str,
    name: str,
    stage: str,
    reason: str | None,
    message: str | None,
) -> ArtifactVersion:
    """Move a version to ``stage`` and append the change to its history."""
    target = parse_stage(stage)
    row = _row(conn, project, kind, name)
    now = time.time()
    conn.execute(
        versions.update().where(versions.c.id == row.id).values(stage=target.value, updated_at=now)
    )
    _add_condition(conn, row.id, target, reason, message, now)
    return get_version(conn, project, kind, name)


def patch_version(
    conn: sa.Connection, project: str, kind: str, name: str, data: dict[str, Any]
) -> ArtifactVersion:
    """Change the ``description``, ``tags``, ``content`` or ``name`` of a version.

    Raises:
        InvalidQuery: for a field that cannot be patched.
        VersionExists: when renaming onto a taken name.
    """
    unknown = set(data) - _PATCHABLE
    if unknown:
        raise InvalidQuery(
            f"cannot patch {', '.join(sorted(unknown))}; patchable fields: "
            f"{', '.join(sorted(_PATCHABLE))}"
        )
    row = _row(conn, project, kind, name)
    values: dict[str, Any] = {"updated_at": time.time()}
    if "description" in data:
        values["description"] = data["description"]
    if "tags" in data:
        values["tags"] = jsonio.dumps(list(data["tags"] or []))
    if "content" in data:
        values["content"] = jsonio.dumps(data["content"] or {})
    new_name = name
    if "name" in data and data["name"] != name:
        new_name = check_version_name(str(data["name"]))
        _refuse_taken(conn, row.project_id, row.kind, new_name, project)
        values["name"] = new_name
    conn.execute(versions.update().where(versions.c.id == row.id).values(**values))
    return get_version(conn, project, kind, new_name)


def _refuse_taken(conn: sa.Connection, project_id: str, kind: str, name: str, project: str) -> None:
    taken = conn.execute(
        sa.select(versions.c.id).where(
            versions.c.project_id == project_id, versions.c.kind == kind, versions.c.name == name
        )
    ).first()
    if taken is not None:
        raise VersionExists(f"{kind} version {name!r} already exists in {project!r}")


def delete_version(conn: sa.Connection, project: str, kind: str, name: str) -> None:
    """Delete a version and its stage history (its blobs stay until ``ensign gc``)."""
    row = _row(conn, project, kind, name)
    conn.execute(stage_conditions.delete().where(stage_conditions.c.version_id == row.id))
    conn.execute(versions.delete().where(versions.c.id == row.id))


def transfer_version(
    conn: sa.Connection, project: str, kind: str, name: str, to_project: str
) -> ArtifactVersion:
    """Move a version to ``to_project`` (created when missing), keeping its name."""
    row = _row(conn, project, kind, name)
    target = ensure_project(conn, to_project)
    _refuse_taken(conn, target.id, row.kind, name, to_project)
    conn.execute(
        versions.update()
        .where(versions.c.id == row.id)
        .values(project_id=target.id, updated_at=time.time())
    )
    return get_version(conn, to_project, kind, name)


def stage_holder(
    conn: sa.Connection, project: str, kind: str, stage: str
) -> ArtifactVersion | None:
    """Return the version that most recently entered ``stage`` and is still there."""
    target = parse_stage(stage)
    project_id = project_row(conn, project).id
    latest = (
        sa.select(sa.func.max(stage_conditions.c.last_transition_time))
        .where(stage_conditions.c.version_id == versions.c.id)
        .where(stage_conditions.c.type == target.value)
        .scalar_subquery()
    )
    row = conn.execute(
        _select()
        .where(
            versions.c.project_id == project_id,
            versions.c.kind == _kind(kind),
            versions.c.stage == target.value,
        )
        .order_by(latest.desc(), versions.c.updated_at.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return _version(row, _conditions(conn, [row.id])[row.id])


def referenced_digests(conn: sa.Connection) -> set[str]:
    """Return every digest a lineage ref or a version manifest names."""
    found: set[str] = set()
    for (text,) in conn.execute(sa.select(versions.c.manifest)):
        found.update(entry["digest"] for entry in jsonio.loads(text).values())
    for (text,) in conn.execute(sa.select(refs.c.manifest)):
        found.update(entry["digest"] for entry in jsonio.loads(text).values())
    return found
