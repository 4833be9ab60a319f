"""A job queue on the ``jobs`` table, shared by every server and worker of a store.

A job is ``queued`` until a worker claims it; claiming sets it ``running`` with the
worker's name, a lease (``lease_until``) and one more attempt.  The worker renews the
lease while it works (:func:`renew`); a worker that dies stops renewing, and once the
lease has passed the job is claimable again, so no job is lost.  Completing or failing a
job checks that the worker still holds it (same worker, same attempt, still running), so a
worker that lost its lease can never complete a job another worker took over.

Claims are serialised by the database: on PostgreSQL the candidate row is locked with
``SELECT ... FOR UPDATE SKIP LOCKED`` (concurrent claimers skip it and take the next); on
SQLite the write transaction (``BEGIN IMMEDIATE``) admits one claimer at a time.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ensign import jsonio
from ensign.errors import NotFound
from ensign.registry.sql.engine import write_transaction
from ensign.registry.sql.schema import jobs

__all__ = [
    "COMPLETED",
    "FAILED",
    "QUEUED",
    "RUNNING",
    "Job",
    "claim",
    "complete",
    "enqueue",
    "fail",
    "get_job",
    "holds",
    "release",
    "renew",
]

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"


@dataclass(frozen=True)
class Job:
    """One job as a worker sees it.

    Attributes:
        id: The job's id (32 hex characters).
        kind: What to do (``push``: evaluate a pushed bundle).
        payload: The job's parameters.
        status: ``queued``, ``running``, ``completed`` or ``failed``.
        attempts: How many times it was claimed (this claim included).
        worker: The worker holding it (or that last held it).
        lease_until: Seconds since the epoch until which ``worker`` holds it.
        error: Why it failed, for a failed job.
    """

    id: str
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    worker: str | None
    lease_until: float | None
    error: str | None


def _job(row: sa.Row[Any]) -> Job:
    return Job(
        id=row.id,
        kind=row.kind,
        payload=jsonio.loads(row.payload),
        status=row.status,
        attempts=row.attempts,
        worker=row.worker,
        lease_until=row.lease_until,
        error=row.error,
    )


def enqueue(conn: sa.Connection, kind: str, payload: dict[str, Any]) -> str:
    """Queue a job in the caller's (write) transaction and return its id.

    Queuing inside the transaction that records what the job is for (a push, say) means
    neither exists without the other.
    """
    job_id = uuid.uuid4().hex
    now = time.time()
    conn.execute(
        jobs.insert().values(
            id=job_id,
            kind=kind,
            payload=jsonio.dumps(payload),
            status=QUEUED,
            attempts=0,
            worker=None,
            lease_until=None,
            error=None,
            created_at=now,
            updated_at=now,
        )
    )
    return job_id


def get_job(conn: sa.Connection, job_id: str) -> Job:
    """Return a job.

    Raises:
        NotFound: when no job has this id.
    """
    row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
    if row is None:
        raise NotFound(f"no job {job_id!r}")
    return _job(row)


def claim(
    engine: sa.Engine,
    worker: str,
    lease_seconds: float,
    *,
    kinds: tuple[str, ...] | None = None,
    now: float | None = None,
) -> Job | None:
    """Take the oldest claimable job: queued, or running under a lease that has passed.

    Args:
        engine: The store's database.
        worker: The claiming worker's name (unique per worker).
        lease_seconds: How long the claim holds before another worker may take over.
        kinds: Only jobs of these kinds (all kinds when ``None``).
        now: The current time (for tests); ``time.time()`` by default.

    Returns:
        The claimed job (``running``, held by ``worker``, ``attempts`` counted), or
        ``None`` when nothing is claimable.
    """
    moment = time.time() if now is None else now
    claimable = sa.or_(
        jobs.c.status == QUEUED,
        sa.and_(jobs.c.status == RUNNING, jobs.c.lease_until < moment),
    )
    query = sa.select(jobs.c.id).where(claimable)
    if kinds is not None:
        query = query.where(jobs.c.kind.in_(list(kinds)))
    query = query.order_by(jobs.c.created_at, jobs.c.id).limit(1)
    # An idle worker polls often: look without the write lock first, take it only for a job.
    with engine.connect() as conn:
        if conn.execute(query).first() is None:
            return None
    with write_transaction(engine) as conn:
        job_id = conn.execute(query.with_for_update(skip_locked=True)).scalar()
        if job_id is None:
            return None
        conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id)
            .values(
                status=RUNNING,
                worker=worker,
                lease_until=moment + lease_seconds,
                attempts=jobs.c.attempts + 1,
                updated_at=moment,
            )
        )
        return get_job(conn, job_id)


def _held(job: Job) -> sa.ColumnElement[bool]:
    return sa.and_(
        jobs.c.id == job.id,
        jobs.c.status == RUNNING,
        jobs.c.worker == job.worker,
        jobs.c.attempts == job.attempts,
    )


def holds(conn: sa.Connection, job: Job) -> bool:
    """Lock the job's row and say whether the claim ``job`` still holds it.

    Call it first in a write transaction whose effects must happen only while the worker
    holds the job; on PostgreSQL the row stays locked until the transaction ends, so no
    other worker can claim it meanwhile.
    """
    row = conn.execute(sa.select(jobs.c.id).where(_held(job)).with_for_update()).first()
    return row is not None


def renew(engine: sa.Engine, job: Job, lease_seconds: float) -> bool:
    """Extend the lease of a job the worker holds; ``False`` when it no longer holds it."""
    with write_transaction(engine) as conn:
        now = time.time()
        result = conn.execute(
            jobs.update().where(_held(job)).values(lease_until=now + lease_seconds, updated_at=now)
        )
        return result.rowcount == 1


def _finish(conn: sa.Connection, job: Job, status: str, error: str | None) -> bool:
    result = conn.execute(
        jobs.update()
        .where(_held(job))
        .values(status=status, error=error, lease_until=None, updated_at=time.time())
    )
    return result.rowcount == 1


def complete(conn: sa.Connection, job: Job) -> bool:
    """Mark a job completed in the caller's transaction, if the claim ``job`` still holds it.

    Returns:
        ``False`` (and nothing changes) when the worker lost the job: its lease passed and
        another worker claimed it, or it was completed already.
    """
    return _finish(conn, job, COMPLETED, None)


def fail(conn: sa.Connection, job: Job, error: str) -> bool:
    """Mark a job failed (not retried) in the caller's transaction, if the claim holds it.

    Returns:
        ``False`` (and nothing changes) when the worker no longer holds the job.
    """
    return _finish(conn, job, FAILED, error)


def release(engine: sa.Engine, job: Job) -> bool:
    """Put a held job back in the queue at once (a worker that stops before finishing it)."""
    with write_transaction(engine) as conn:
        result = conn.execute(
            jobs.update()
            .where(_held(job))
            .values(status=QUEUED, lease_until=None, updated_at=time.time())
        )
        return result.rowcount == 1
