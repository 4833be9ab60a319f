"""Pushes: bundles sent through the push API, and the evaluation each one queues.

A push is created ``queued`` together with its evaluation job (one transaction), becomes
``running`` when a worker takes the job, and ends ``completed`` or ``failed`` with a status
message, goal counts and one result per goal.  The artifact version a completed push
becomes is named in ``version_name`` (of kind ``options["kind"]``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ensign import jsonio
from ensign.errors import VersionNotFound
from ensign.registry.sql.jobs import enqueue
from ensign.registry.sql.runs import project_row
from ensign.registry.sql.schema import projects, pushes, versions

__all__ = [
    "PUSH_JOB",
    "Push",
    "create_push",
    "finish_push",
    "get_push",
    "set_evaluation",
    "start_push",
    "waiting_storage_uris",
]

#: The job kind that evaluates a push.
PUSH_JOB = "push"


@dataclass(frozen=True)
class Push:
    """One pushed bundle and its evaluation.

    Attributes:
        id: The push's id (the push API's version id).
        project_id: The project's id.
        project: The project's key.
        message: The commit message.
        storage_uri: Where the bundle archive is.
        file_size: The archive's size in bytes.
        status: ``queued``, ``running``, ``completed`` or ``failed``.
        status_message: What happened, in words.
        passing: Goals passing.
        failing: Goals not passing.
        total: Goals in the bundle.
        results: One result per goal (see :meth:`ensign.bundles.Evaluation.to_dict`).
        options: The push's ensign options (``when``, ``stage``, ``kind``).
        run_uuid: The run that evaluated it.
        version_name: The version it became, if it did.
        author_id: The id of the token that pushed it.
        created_at: Seconds since the epoch.
        updated_at: Seconds since the epoch.
    """

    id: str
    project_id: str
    project: str
    message: str
    storage_uri: str
    file_size: int | None
    status: str
    status_message: str | None
    passing: int
    failing: int
    total: int
    results: list[dict[str, Any]]
    options: dict[str, Any]
    run_uuid: str | None
    version_name: str | None
    author_id: str | None
    created_at: float
    updated_at: float


def _push(row: sa.Row[Any]) -> Push:
    return Push(
        id=row.id,
        project_id=row.project_id,
        project=row.project_key,
        message=row.message,
        storage_uri=row.storage_uri,
        file_size=row.file_size,
        status=row.status,
        status_message=row.status_message,
        passing=row.passing,
        failing=row.failing,
        total=row.total,
        results=jsonio.loads(row.results),
        options=jsonio.loads(row.options),
        run_uuid=row.run_uuid,
        version_name=row.version_name,
        author_id=row.author_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def create_push(
    conn: sa.Connection,
    project: str,
    *,
    message: str,
    storage_uri: str,
    file_size: int | None,
    options: dict[str, Any],
    author_id: str | None,
) -> tuple[Push, str]:
    """Record a ``queued`` push and queue its evaluation, in the caller's write transaction.

    Returns:
        The push and the id of its job.

    Raises:
        ProjectNotFound: when ``project`` (a key or id) does not exist.
    """
    project_id = project_row(conn, project).id
    push_id = uuid.uuid4().hex
    now = time.time()
    conn.execute(
        pushes.insert().values(
            id=push_id,
            project_id=project_id,
            message=message,
            storage_uri=storage_uri,
            file_size=file_size,
            status="queued",
            status_message="queued for evaluation",
            passing=0,
            failing=0,
            total=0,
            results=jsonio.dumps([]),
            options=jsonio.dumps(options),
            run_uuid=None,
            version_name=None,
            author_id=author_id,
            created_at=now,
            updated_at=now,
        )
    )
    job_id = enqueue(conn, PUSH_JOB, {"push": push_id})
    return get_push(conn, push_id), job_id


def get_push(conn: sa.Connection, push_id: str) -> Push:
    """Return a push.

    Raises:
        VersionNotFound: when no push has this id (the push API calls it a version).
    """
    row = conn.execute(
        sa.select(pushes, projects.c.key.label("project_key"))
        .join(projects, projects.c.id == pushes.c.project_id)
        .where(pushes.c.id == push_id)
    ).first()
    if row is None:
        raise VersionNotFound(f"version {push_id!r} does not exist")
    return _push(row)


def waiting_storage_uris(conn: sa.Connection, storage_uri: str | None = None) -> set[str]:
    """Return the storage URIs of the pushes still to be evaluated (queued or running).

    With ``storage_uri``, only that one, if a waiting push names it.
    """
    query = sa.select(pushes.c.storage_uri).where(pushes.c.status.in_(["queued", "running"]))
    if storage_uri is not None:
        query = query.where(pushes.c.storage_uri == storage_uri)
    return {row.storage_uri for row in conn.execute(query)}


def start_push(conn: sa.Connection, push_id: str, run_uuid: str | None, message: str) -> None:
    """Mark a push ``running`` (evaluated by ``run_uuid``)."""
    conn.execute(
        pushes.update()
        .where(pushes.c.id == push_id)
        .values(status="running", status_message=message, run_uuid=run_uuid, updated_at=time.time())
    )


def finish_push(
    conn: sa.Connection,
    push_id: str,
    *,
    status: str,
    status_message: str,
    passing: int,
    failing: int,
    total: int,
    results: list[dict[str, Any]],
    run_uuid: str | None,
    version_name: str | None,
    decision: dict[str, Any] | None = None,
) -> None:
    """Record the outcome of a push's evaluation (and the promotion decision, if any)."""
    values: dict[str, Any] = {}
    if decision is not None:
        options = jsonio.loads(
            conn.execute(sa.select(pushes.c.options).where(pushes.c.id == push_id)).scalar_one()
        )
        values["options"] = jsonio.dumps({**options, "decision": decision})
    conn.execute(
        pushes.update()
        .where(pushes.c.id == push_id)
        .values(
            status=status,
            status_message=status_message,
            passing=passing,
            failing=failing,
            total=total,
            results=jsonio.dumps(results),
            run_uuid=run_uuid,
            version_name=version_name,
            updated_at=time.time(),
            **values,
        )
    )


def set_evaluation(
    conn: sa.Connection, project_id: str, kind: str, name: str, evaluation: dict[str, Any]
) -> None:
    """Store the evaluation of a version (the goal results of the push it came from)."""
    conn.execute(
        versions.update()
        .where(
            versions.c.project_id == project_id,
            versions.c.kind == kind,
            versions.c.name == name,
        )
        .values(evaluation=jsonio.dumps(evaluation))
    )
