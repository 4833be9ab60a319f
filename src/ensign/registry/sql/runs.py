"""SQL operations on projects, runs, params, metrics, lineage refs and decisions."""

from __future__ import annotations

import functools
import math
import operator
import time
import uuid as uuidlib
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

import sqlalchemy as sa

from ensign import jsonio
from ensign.errors import Conflict, InvalidName, InvalidQuery, ProjectNotFound, RunNotFound
from ensign.records import (
    ArtifactRef,
    MetricPoint,
    Project,
    PromotionDecision,
    Run,
    RunStatus,
    parse_status,
)
from ensign.registry.base import MetricRow, RunBatch
from ensign.registry.query import parse_query, parse_sort
from ensign.registry.sql.dialect import insert_ignore
from ensign.registry.sql.schema import decisions, metrics, params, projects, refs, runs

__all__ = [
    "RUN_QUERY_FIELDS",
    "apply_batch",
    "create_project",
    "create_run",
    "ensure_project",
    "get_metrics",
    "get_project",
    "get_run",
    "last_steps",
    "list_decisions",
    "list_projects",
    "list_refs",
    "list_runs",
    "project_row",
    "record_decision",
    "set_run_status",
]

RUN_QUERY_FIELDS = frozenset({"name", "status", "tags", "is_promoted", "uuid"})
_RUN_SORT_FIELDS = frozenset({"started_at", "ended_at", "name", "status"})


def _project(row: sa.Row[Any]) -> Project:
    created = jsonio.from_epoch(row.created_at)
    assert created is not None
    return Project(id=row.id, key=row.key, description=row.description, created_at=created)


def project_row(conn: sa.Connection, key_or_id: str) -> sa.Row[Any]:
    """Return the row of a project given its key or id.

    Raises:
        ProjectNotFound: when neither matches.
    """
    row = conn.execute(
        sa.select(projects).where(sa.or_(projects.c.key == key_or_id, projects.c.id == key_or_id))
    ).first()
    if row is None:
        raise ProjectNotFound(f"project {key_or_id!r} does not exist")
    return row


def create_project(conn: sa.Connection, key: str, description: str | None) -> Project:
    """Create a project.

    Raises:
        Conflict: when the key is taken.
    """
    new_id = uuidlib.uuid4().hex
    conn.execute(
        insert_ignore(conn, projects, ["key"]).values(
            id=new_id, key=key, description=description, created_at=time.time()
        )
    )
    # rowcount is not reliable for INSERT on every driver: compare ids instead.
    row = project_row(conn, key)
    if row.id != new_id:
        raise Conflict(f"project {key!r} already exists")
    return _project(row)


def ensure_project(conn: sa.Connection, key: str) -> Project:
    """Return the project ``key``, creating it if needed (safe under concurrency)."""
    conn.execute(
        insert_ignore(conn, projects, ["key"]).values(
            id=uuidlib.uuid4().hex, key=key, description=None, created_at=time.time()
        )
    )
    return _project(project_row(conn, key))


def get_project(conn: sa.Connection, key_or_id: str) -> Project:
    """Return a project by key or id."""
    return _project(project_row(conn, key_or_id))


def list_projects(conn: sa.Connection) -> list[Project]:
    """Return every project, by key."""
    rows = conn.execute(sa.select(projects).order_by(projects.c.key)).all()
    return [_project(r) for r in rows]


def _runs_select() -> sa.Select[Any]:
    return sa.select(runs, projects.c.key.label("project_key")).join(
        projects, projects.c.id == runs.c.project_id
    )


def _params_of(conn: sa.Connection, uuids: Sequence[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {u: {} for u in uuids}
    if uuids:
        for row in conn.execute(sa.select(params).where(params.c.run_uuid.in_(uuids))):
            found[row.run_uuid][row.key] = jsonio.loads(row.value)
    return found


def _run(row: sa.Row[Any], run_params: dict[str, Any]) -> Run:
    started = jsonio.from_epoch(row.started_at)
    assert started is not None
    return Run(
        uuid=row.uuid,
        project=row.project_key,
        name=row.name,
        status=row.status,
        params=run_params,
        tags=jsonio.loads(row.tags),
        environment=jsonio.loads(row.environment),
        started_at=started,
        ended_at=jsonio.from_epoch(row.ended_at),
        is_promoted=bool(row.is_promoted),
        description=row.description,
        outputs=jsonio.loads(row.outputs),
    )


def create_run(
    conn: sa.Connection,
    project: str,
    *,
    name: str | None,
    description: str | None,
    tags: Sequence[str],
    environment: dict[str, Any],
    run_uuid: str | None = None,
) -> Run:
    """Create a run in ``project`` (created if needed) with status ``running``."""
    project_id = ensure_project(conn, project).id
    new_uuid = run_uuid or uuidlib.uuid4().hex
    if run_uuid is not None:
        if len(run_uuid) != 32 or any(c not in "0123456789abcdef" for c in run_uuid):
            raise InvalidName(f"a run id must be 32 lowercase hex characters, got {run_uuid!r}")
        taken = conn.execute(sa.select(runs.c.uuid).where(runs.c.uuid == run_uuid)).first()
        if taken is not None:
            raise Conflict(f"run {run_uuid!r} already exists")
    conn.execute(
        runs.insert().values(
            uuid=new_uuid,
            project_id=project_id,
            name=name,
            description=description,
            status=RunStatus.RUNNING.value,
            tags=jsonio.dumps(list(tags)),
            environment=jsonio.dumps(environment),
            outputs="{}",
            started_at=time.time(),
            ended_at=None,
            is_promoted=False,
        )
    )
    return get_run(conn, new_uuid)


def get_run(conn: sa.Connection, run_uuid: str) -> Run:
    """Return a run.

    Raises:
        RunNotFound: when no run has this id.
    """
    row = conn.execute(_runs_select().where(runs.c.uuid == run_uuid)).first()
    if row is None:
        raise RunNotFound(f"run {run_uuid!r} does not exist")
    return _run(row, _params_of(conn, [run_uuid])[run_uuid])


def list_runs(
    conn: sa.Connection,
    project: str,
    query: str | None,
    sort: str | None,
    limit: int,
    offset: int,
) -> list[Run]:
    """Return runs of a project, filtered by ``query`` and ordered by ``sort``."""
    project_id = project_row(conn, project).id
    stmt = _runs_select().where(runs.c.project_id == project_id)
    for term in parse_query(query, RUN_QUERY_FIELDS):
        if term.field == "tags":
            clause = sa.or_(
                *(runs.c.tags.contains(jsonio.dumps(v), autoescape=True) for v in term.values)
            )
        elif term.field == "is_promoted":
            clause = runs.c.is_promoted.in_(
                [v.lower() in {"1", "true", "yes"} for v in term.values]
            )
        else:
            clause = runs.c[term.field].in_(term.values)
        stmt = stmt.where(sa.not_(clause) if term.negate else clause)
    order = parse_sort(sort, _RUN_SORT_FIELDS, "-started_at")
    column = runs.c[order.field]
    stmt = stmt.order_by(column.desc() if order.descending else column.asc(), runs.c.uuid)
    if limit < 0 or offset < 0:
        raise InvalidQuery("limit and offset must not be negative")
    rows = conn.execute(stmt.limit(limit).offset(offset)).all()
    found = _params_of(conn, [r.uuid for r in rows])
    return [_run(r, found[r.uuid]) for r in rows]


def _require_run(conn: sa.Connection, run_uuid: str) -> sa.Row[Any]:
    row = conn.execute(sa.select(runs).where(runs.c.uuid == run_uuid)).first()
    if row is None:
        raise RunNotFound(f"run {run_uuid!r} does not exist")
    return row


def set_run_status(conn: sa.Connection, run_uuid: str, status: str, ended: bool) -> None:
    """Set a run's status; ``ended`` stamps its end time."""
    _require_run(conn, run_uuid)
    values: dict[str, Any] = {"status": parse_status(status).value}
    if ended:
        values["ended_at"] = time.time()
    conn.execute(runs.update().where(runs.c.uuid == run_uuid).values(**values))


def _merge_json(conn: sa.Connection, run_uuid: str, column: str, extra: dict[str, Any]) -> None:
    row = _require_run(conn, run_uuid)
    merged = jsonio.loads(row._mapping[column])
    merged.update(extra)
    conn.execute(
        runs.update().where(runs.c.uuid == run_uuid).values({column: jsonio.dumps(merged)})
    )


def _metric_value(value: float) -> float | None:
    return None if math.isnan(value) else value


_METRIC_COLUMNS = 'INSERT INTO metrics (run_uuid, "key", step, value, timestamp) '
#: PostgreSQL gets each column as one array: one statement, no per-row work in Python.
_POSTGRES_INSERT = _METRIC_COLUMNS + (
    "SELECT %s, k, s, NULLIF(v, 'NaN'::float8), t "
    "FROM unnest(%s::text[], %s::bigint[], %s::float8[], %s::float8[]) AS u(k, s, v, t)"
)
_POSTGRES_ROWS = 65536
#: Most metric rows one SQLite statement inserts. Big statements matter: the driver lets go
#: of the GIL once per statement, and a logging thread that holds the GIL in between makes
#: the writer wait for it (up to the 5 ms switch interval) each time.
_SQLITE_MAX_ROWS = 4096
_SQLITE_LIMIT_VARIABLE_NUMBER = 9  # sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER (3.11+)


@functools.cache
def _sqlite_insert(rows: int) -> str:
    """Return an INSERT of ``rows`` metric points that binds the run id once.

    Plain ``?`` placeholders: numbered ones make SQLite's compile time grow with the square
    of their count.
    """
    values = ",".join(["(?,?,?,?)"] * rows)
    return f"{_METRIC_COLUMNS}SELECT ?, column1, column2, column3, column4 FROM (VALUES {values})"


def _sqlite_chunk_rows(conn: sa.Connection) -> int:
    """Rows per statement: a power of two that keeps the parameters under SQLite's limit."""
    # Connection.getlimit is Python >= 3.11; older builds of SQLite allow 999 parameters.
    getlimit = getattr(conn.connection.driver_connection, "getlimit", None)
    limit = int(getlimit(_SQLITE_LIMIT_VARIABLE_NUMBER)) if getlimit is not None else 999
    rows = _SQLITE_MAX_ROWS
    while rows * 4 + 1 > limit:
        rows //= 2
    return rows


def _insert_metrics(conn: sa.Connection, run_uuid: str, points: list[MetricRow]) -> None:
    """Insert metric points through the driver, without a dict or any work per row in Python.

    Hundreds of thousands of points a second go through here. Rows grouped by metric (the
    background writer sends them so) insert faster: consecutive rows then land on the same
    pages of the ``(run, key, step)`` index. NaN is stored as NULL: SQLite does so itself
    when it binds a NaN; PostgreSQL is asked to with ``NULLIF``.
    """
    dialect = conn.dialect.name
    if dialect == "sqlite":
        chunk = _sqlite_chunk_rows(conn)
        start, total = 0, len(points)
        while start < total:
            # Full chunks in one executemany; the rest in power-of-two statements, so that
            # only a handful of statements is ever compiled and cached.
            rows = chunk
            while rows > total - start:
                rows //= 2
            stop = start + (total - start) // rows * rows if rows == chunk else start + rows
            conn.exec_driver_sql(
                _sqlite_insert(rows),
                [
                    (run_uuid, *chain.from_iterable(points[first : first + rows]))
                    for first in range(start, stop, rows)
                ],
            )
            start = stop
    elif dialect == "postgresql":
        for start in range(0, len(points), _POSTGRES_ROWS):
            part = points[start : start + _POSTGRES_ROWS]
            columns = [list(map(operator.itemgetter(i), part)) for i in range(4)]
            conn.exec_driver_sql(_POSTGRES_INSERT, (run_uuid, *columns))
    else:
        conn.execute(
            metrics.insert(),
            [
                {
                    "run_uuid": run_uuid,
                    "key": k,
                    "step": s,
                    "value": _metric_value(v),
                    "timestamp": t,
                }
                for k, s, v, t in points
            ],
        )


def apply_batch(conn: sa.Connection, batch: RunBatch) -> None:
    """Write everything a run buffered, in the caller's transaction.

    Raises:
        RunNotFound: when no run has the batch's id (nothing is written).
    """
    run_uuid = batch.run_uuid
    _require_run(conn, run_uuid)
    if batch.metrics:
        _insert_metrics(conn, run_uuid, batch.metrics)
    if batch.params:
        conn.execute(
            params.delete().where(
                params.c.run_uuid == run_uuid, params.c.key.in_(list(batch.params))
            )
        )
        conn.execute(
            params.insert(),
            [
                {"run_uuid": run_uuid, "key": k, "value": jsonio.dumps(v)}
                for k, v in batch.params.items()
            ],
        )
    if batch.outputs:
        _merge_json(conn, run_uuid, "outputs", batch.outputs)
    if batch.environment:
        _merge_json(conn, run_uuid, "environment", batch.environment)
    if batch.tags:
        row = _require_run(conn, run_uuid)
        tags = list(jsonio.loads(row.tags))
        tags.extend(t for t in batch.tags if t not in tags)
        conn.execute(runs.update().where(runs.c.uuid == run_uuid).values(tags=jsonio.dumps(tags)))
    if batch.refs:
        put_refs(conn, batch.refs)


def put_refs(conn: sa.Connection, new_refs: Iterable[ArtifactRef]) -> None:
    """Insert lineage refs; a ref with the same run, name and direction is replaced."""
    for ref in new_refs:
        key = (refs.c.run_uuid == ref.run, refs.c.name == ref.name, refs.c.is_input == ref.is_input)
        conn.execute(refs.delete().where(*key))
        conn.execute(
            refs.insert().values(
                run_uuid=ref.run,
                name=ref.name,
                is_input=ref.is_input,
                kind=ref.kind,
                uri=ref.uri,
                digest=ref.digest,
                size=ref.size,
                summary=jsonio.dumps(ref.summary),
                store_uri=ref.store_uri,
                manifest=jsonio.dumps(ref.manifest),
                logged_at=time.time(),
            )
        )


def list_refs(conn: sa.Connection, run_uuid: str) -> list[ArtifactRef]:
    """Return a run's lineage refs, inputs first, then by name."""
    _require_run(conn, run_uuid)
    rows = conn.execute(
        sa.select(refs)
        .where(refs.c.run_uuid == run_uuid)
        .order_by(refs.c.is_input.desc(), refs.c.name)
    ).all()
    return [
        ArtifactRef(
            run=r.run_uuid,
            name=r.name,
            kind=r.kind,
            uri=r.uri,
            digest=r.digest,
            size=r.size,
            is_input=bool(r.is_input),
            summary=jsonio.loads(r.summary),
            store_uri=r.store_uri,
            manifest=jsonio.loads(r.manifest),
        )
        for r in rows
    ]


def last_steps(conn: sa.Connection, run_uuid: str) -> dict[str, int]:
    """Return the highest step logged for each metric of a run."""
    _require_run(conn, run_uuid)
    rows = conn.execute(
        sa.select(metrics.c.key, sa.func.max(metrics.c.step))
        .where(metrics.c.run_uuid == run_uuid)
        .group_by(metrics.c.key)
    ).all()
    return {key: int(step) for key, step in rows}


def get_metrics(
    conn: sa.Connection, run_uuid: str, names: Sequence[str] | None
) -> dict[str, list[MetricPoint]]:
    """Return a run's metric histories in step order (NaN comes back as NaN)."""
    _require_run(conn, run_uuid)
    stmt = sa.select(metrics.c.key, metrics.c.step, metrics.c.value, metrics.c.timestamp).where(
        metrics.c.run_uuid == run_uuid
    )
    if names is not None:
        stmt = stmt.where(metrics.c.key.in_(list(names)))
    stmt = stmt.order_by(metrics.c.key, metrics.c.step, metrics.c.timestamp)
    found: dict[str, list[MetricPoint]] = {}
    for key, step, value, ts in conn.execute(stmt):
        found.setdefault(key, []).append(
            MetricPoint(int(step), math.nan if value is None else float(value), float(ts))
        )
    return found


def record_decision(conn: sa.Connection, run_uuid: str, decision: PromotionDecision) -> None:
    """Store a promotion decision on its run; a promotion also marks the run promoted."""
    _require_run(conn, run_uuid)
    conn.execute(
        decisions.insert().values(
            run_uuid=run_uuid,
            promoted=decision.promoted,
            version=decision.version,
            reasons=jsonio.dumps(decision.reasons),
            evaluated_at=decision.evaluated_at.timestamp(),
            dry_run=decision.dry_run,
        )
    )
    if decision.promoted and not decision.dry_run:
        conn.execute(runs.update().where(runs.c.uuid == run_uuid).values(is_promoted=True))


def list_decisions(conn: sa.Connection, run_uuid: str) -> list[PromotionDecision]:
    """Return every promotion decision of a run, oldest first."""
    _require_run(conn, run_uuid)
    rows = conn.execute(
        sa.select(decisions).where(decisions.c.run_uuid == run_uuid).order_by(decisions.c.id)
    ).all()
    result = []
    for r in rows:
        evaluated = jsonio.from_epoch(r.evaluated_at)
        assert evaluated is not None
        result.append(
            PromotionDecision(
                promoted=bool(r.promoted),
                version=r.version,
                reasons=jsonio.loads(r.reasons),
                evaluated_at=evaluated,
                dry_run=bool(r.dry_run),
            )
        )
    return result
