"""Runs of the native API: create, read, list, status, batched writes, metrics, lineage.

A run is named by its id (32 hex characters) in the path; the project of a new run, or of
a listing, travels in the body or as the ``project`` query parameter (a project key may
hold a ``/``).  Records are in the JSON form of :mod:`ensign.registry.wire`.

=======  =====================================  ======================================
method   path                                   what (role on the run's project)
=======  =====================================  ======================================
POST     ``/api/v1/runs``                       create (``write``); the client may
                                                choose ``run_uuid``, so a retried
                                                create never makes two runs
GET      ``/api/v1/runs?project=P``             list, with ``query``, ``sort``,
                                                ``limit``, ``offset`` (``read``)
GET      ``/api/v1/runs/{run}``                 one run (``read``)
POST     ``/api/v1/runs/{run}/status``          ``{status, ended}`` (``write``)
POST     ``/api/v1/runs/{run}/batch``           one :class:`~ensign.registry.RunBatch`
                                                in one transaction (``write``)
GET      ``/api/v1/runs/{run}/last-steps``      ``{steps: {metric: step}}`` (``read``)
GET      ``/api/v1/runs/{run}/metrics``         histories; ``name=`` (repeated) with
                                                ``filtered=true`` selects (``read``)
GET      ``/api/v1/runs/{run}/refs``            lineage refs (``read``)
POST     ``/api/v1/runs/{run}/decisions``       record a decision (``write``)
GET      ``/api/v1/runs/{run}/decisions``       decisions, oldest first (``read``)
=======  =====================================  ======================================
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Response
from pydantic import BaseModel, ConfigDict
from starlette.requests import Request

from ensign.errors import InvalidRequest
from ensign.registry.base import RunBatch
from ensign.registry.wire import (
    batch_from_wire,
    decision_from_wire,
    decision_to_wire,
    metrics_to_wire,
    ref_to_wire,
    run_to_wire,
)
from ensign.server.auth import Token, server_state
from ensign.server.idempotency import WireResponse, access_of, native_router

__all__ = ["DecisionBody", "RefBody", "router"]

router = native_router("runs")


class NewRun(BaseModel):
    """The body of ``POST /api/v1/runs``."""

    model_config = ConfigDict(extra="forbid")
    project: str
    run_uuid: str | None = None
    name: str | None = None
    description: str | None = None
    tags: list[str] = []
    environment: dict[str, Any] = {}


class RunStatusBody(BaseModel):
    """The body of ``POST /api/v1/runs/{run}/status``."""

    model_config = ConfigDict(extra="forbid")
    status: str
    ended: bool = False


class RefBody(BaseModel):
    """A lineage ref in the JSON form of :func:`ensign.registry.wire.ref_to_wire`."""

    model_config = ConfigDict(extra="forbid")
    run: str
    name: str
    kind: str
    uri: str | None = None
    digest: str | None = None
    size: int | None = None
    is_input: bool = False
    summary: dict[str, Any] = {}
    store_uri: str | None = None
    manifest: dict[str, dict[str, Any]] = {}


class BatchBody(BaseModel):
    """The body of ``POST /api/v1/runs/{run}/batch`` (:func:`~ensign.registry.wire.batch_to_wire`).

    ``metrics`` rows are ``[key, step, value, timestamp]``; a value JSON cannot carry is
    ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``.
    """

    model_config = ConfigDict(extra="forbid")
    metrics: list[tuple[str, int, float | str, float]] = []
    params: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    environment: dict[str, Any] = {}
    tags: list[str] = []
    refs: list[RefBody] = []


class DecisionBody(BaseModel):
    """A promotion decision in the JSON form of :func:`~ensign.registry.wire.decision_to_wire`."""

    model_config = ConfigDict(extra="forbid")
    promoted: bool
    version: str | None = None
    reasons: list[str] = []
    evaluated_at: str
    dry_run: bool = False


def decision_of(body: DecisionBody) -> Any:
    """Return the :class:`~ensign.records.PromotionDecision` of a decision body.

    Raises:
        InvalidRequest: ``evaluated_at`` is not an ISO 8601 time.
    """
    try:
        return decision_from_wire(body.model_dump())
    except ValueError as exc:
        raise InvalidRequest(f"evaluated_at: {exc}") from None


@router.post("/api/v1/runs", status_code=201)
def create_run(request: Request, token: Token, body: NewRun) -> WireResponse:
    """Create a running run (its project is created when missing)."""
    access_of(request).require_project(token, body.project, "write")
    run = server_state(request).registry.create_run(
        body.project,
        name=body.name,
        description=body.description,
        tags=body.tags,
        environment=body.environment,
        run_uuid=body.run_uuid,
    )
    return WireResponse(run_to_wire(run), status_code=201)


@router.get("/api/v1/runs")
def list_runs(
    request: Request,
    token: Token,
    project: str,
    query: str | None = None,
    sort: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> WireResponse:
    """Return runs of a project, newest first unless ``sort`` says otherwise."""
    access_of(request).require_project(token, project, "read")
    found = server_state(request).registry.list_runs(project, query, sort, limit, offset)
    return WireResponse({"runs": [run_to_wire(r) for r in found]})


@router.get("/api/v1/runs/{run}")
def get_run(request: Request, token: Token, run: str) -> WireResponse:
    """Return a run."""
    access_of(request).require_run(token, run, "read")
    return WireResponse(run_to_wire(server_state(request).registry.get_run(run)))


@router.post("/api/v1/runs/{run}/status", status_code=204)
def set_run_status(request: Request, token: Token, run: str, body: RunStatusBody) -> Response:
    """Set a run's status; ``ended`` also stamps its end time."""
    access_of(request).require_run(token, run, "write")
    server_state(request).registry.set_run_status(run, body.status, ended=body.ended)
    return Response(status_code=204)


@router.post("/api/v1/runs/{run}/batch", status_code=204)
def write_batch(request: Request, token: Token, run: str, body: BatchBody) -> Response:
    """Write a run's buffered metrics, params, outputs, tags and refs in one transaction."""
    access_of(request).require_run(token, run, "write")
    try:
        batch = batch_from_wire(run, body.model_dump())
    except KeyError as exc:
        raise InvalidRequest(
            f"metrics: a value must be a number, 'NaN', 'Infinity' or '-Infinity', not {exc}"
        ) from None
    state = server_state(request)
    _check_refs(batch, state.backend.store.uri)
    state.registry.write_batch(batch)
    return Response(status_code=204)


def _check_refs(batch: RunBatch, store_uri: str) -> None:
    """Refuse refs that name another run, or bytes in a store other than the server's.

    Raises:
        InvalidRequest: naming the ref and the field.
    """
    for index, ref in enumerate(batch.refs):
        if ref.run != batch.run_uuid:
            raise InvalidRequest(
                f"refs[{index}].run: a batch of run {batch.run_uuid} cannot log refs of run "
                f"{ref.run}"
            )
        if ref.store_uri is not None and ref.store_uri.rstrip("/") != store_uri:
            raise InvalidRequest(
                f"refs[{index}].store_uri: bytes logged through the server are in its store "
                f"{store_uri}, not in {ref.store_uri}"
            )


@router.get("/api/v1/runs/{run}/last-steps")
def last_steps(request: Request, token: Token, run: str) -> WireResponse:
    """Return the highest step of each metric of a run."""
    access_of(request).require_run(token, run, "read")
    return WireResponse({"steps": server_state(request).registry.last_steps(run)})


@router.get("/api/v1/runs/{run}/metrics")
def get_metrics(
    request: Request,
    token: Token,
    run: str,
    name: Annotated[list[str] | None, Query()] = None,
    filtered: bool = False,
) -> WireResponse:
    """Return metric histories in step order; with ``filtered``, only those ``name`` gives."""
    access_of(request).require_run(token, run, "read")
    names = list(name or []) if filtered else None
    history = server_state(request).registry.get_metrics(run, names)
    return WireResponse({"metrics": metrics_to_wire(history)})


@router.get("/api/v1/runs/{run}/refs")
def list_refs(request: Request, token: Token, run: str) -> WireResponse:
    """Return a run's lineage refs, inputs first."""
    access_of(request).require_run(token, run, "read")
    refs = server_state(request).registry.list_refs(run)
    return WireResponse({"refs": [ref_to_wire(r) for r in refs]})


@router.post("/api/v1/runs/{run}/decisions", status_code=204)
def record_decision(request: Request, token: Token, run: str, body: DecisionBody) -> Response:
    """Store a promotion decision on a run."""
    access_of(request).require_run(token, run, "write")
    server_state(request).registry.record_decision(run, decision_of(body))
    return Response(status_code=204)


@router.get("/api/v1/runs/{run}/decisions")
def list_decisions(request: Request, token: Token, run: str) -> WireResponse:
    """Return a run's promotion decisions, oldest first."""
    access_of(request).require_run(token, run, "read")
    found = server_state(request).registry.list_decisions(run)
    return WireResponse({"decisions": [decision_to_wire(d) for d in found]})
