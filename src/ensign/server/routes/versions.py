"""Artifact and model versions of the native API: register, read, list, stage, patch, move.

A version is named by ``{kind}/{name}`` in the path (``kind`` is ``artifact`` or
``model``; names hold no ``/``) and its project by the ``project`` query parameter,
always, since a project key may hold a ``/``.  Versions are in the JSON form of
:func:`ensign.registry.wire.version_to_wire`.

=======  ================================================  ===============================
method   path (all take ``?project=P``)                    what (role on ``P``)
=======  ================================================  ===============================
POST     ``/api/v1/versions/{kind}``                       register a
                                                           :class:`~ensign.registry.VersionSpec`
                                                           and ``force`` (``write``)
GET      ``/api/v1/versions/{kind}``                       list, with ``query``, ``sort``,
                                                           ``limit``, ``offset`` (``read``)
GET      ``/api/v1/versions/{kind}/{name}``                one version (``read``)
PATCH    ``/api/v1/versions/{kind}/{name}``                change description, tags,
                                                           content or name (``write``)
DELETE   ``/api/v1/versions/{kind}/{name}``                delete (``write``)
POST     ``/api/v1/versions/{kind}/{name}/stage``          ``{stage, reason, message}``
                                                           (``write``)
POST     ``/api/v1/versions/{kind}/{name}/transfer``       ``{to_project}`` (``write`` on
                                                           both projects)
GET      ``/api/v1/stage-holders/{kind}/{stage}``          ``{version}``: the holder of a
                                                           stage, or ``null`` (``read``)
=======  ================================================  ===============================

A version is registered through :func:`ensign.promotion.register.register_version`, so the
server commits it only once its store holds every blob the manifest names; a manifest may
name only a store the server serves (its own, or one a ref or version already names).
"""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic import BaseModel, ConfigDict
from starlette.requests import Request

from ensign.errors import InvalidRequest
from ensign.promotion.register import register_version
from ensign.registry.wire import spec_from_wire, version_to_wire
from ensign.server.auth import Token, server_state
from ensign.server.idempotency import WireResponse, access_of, native_router
from ensign.server.routes.blobs import served_store
from ensign.server.routes.runs import DecisionBody

__all__ = ["router"]

router = native_router("versions")


class NewVersion(BaseModel):
    """The body of ``POST /api/v1/versions/{kind}``: a spec (see ``spec_to_wire``) and ``force``."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    description: str | None = None
    tags: list[str] = []
    content: dict[str, Any] = {}
    run: str | None = None
    artifacts: list[str] = []
    manifest: dict[str, dict[str, Any]] = {}
    store_uri: str | None = None
    stage: str | None = None
    stage_reason: str | None = None
    stage_message: str | None = None
    decision: DecisionBody | None = None
    force: bool = False


class StageChange(BaseModel):
    """The body of ``POST /api/v1/versions/{kind}/{name}/stage``."""

    model_config = ConfigDict(extra="forbid")
    stage: str
    reason: str | None = None
    message: str | None = None


class Transfer(BaseModel):
    """The body of ``POST /api/v1/versions/{kind}/{name}/transfer``."""

    model_config = ConfigDict(extra="forbid")
    to_project: str


@router.post("/api/v1/versions/{kind}", status_code=201)
def create_version(
    request: Request, token: Token, kind: str, project: str, body: NewVersion
) -> WireResponse:
    """Register a version atomically (next ``vN`` when unnamed), once its blobs are stored."""
    access_of(request).require_project(token, project, "write")
    state = server_state(request)
    if body.run is not None:
        access_of(request).require_run(token, body.run, "read")
    try:
        spec = spec_from_wire(body.model_dump(exclude={"force"}))
    except ValueError as exc:
        raise InvalidRequest(f"decision.evaluated_at: {exc}") from None
    if spec.manifest:
        served_store(state, spec.store_uri)
    version = register_version(state.backend, project, kind, spec, force=body.force)
    return WireResponse(version_to_wire(version), status_code=201)


@router.get("/api/v1/versions/{kind}")
def list_versions(
    request: Request,
    token: Token,
    kind: str,
    project: str,
    query: str | None = None,
    sort: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> WireResponse:
    """Return versions of a project and kind, newest first unless ``sort`` says otherwise."""
    access_of(request).require_project(token, project, "read")
    registry = server_state(request).registry
    found = registry.list_versions(project, kind, query, sort, limit, offset)
    return WireResponse({"versions": [version_to_wire(v) for v in found]})


@router.get("/api/v1/versions/{kind}/{name}")
def get_version(request: Request, token: Token, kind: str, name: str, project: str) -> WireResponse:
    """Return a version."""
    access_of(request).require_project(token, project, "read")
    version = server_state(request).registry.get_version(project, kind, name)
    return WireResponse(version_to_wire(version))


@router.patch("/api/v1/versions/{kind}/{name}")
def patch_version(
    request: Request, token: Token, kind: str, name: str, project: str, body: dict[str, Any]
) -> WireResponse:
    """Change description, tags, content or name; other fields are refused (400)."""
    access_of(request).require_project(token, project, "write")
    version = server_state(request).registry.patch_version(project, kind, name, body)
    return WireResponse(version_to_wire(version))


@router.delete("/api/v1/versions/{kind}/{name}", status_code=204)
def delete_version(request: Request, token: Token, kind: str, name: str, project: str) -> Response:
    """Delete a version and its stage history."""
    access_of(request).require_project(token, project, "write")
    server_state(request).registry.delete_version(project, kind, name)
    return Response(status_code=204)


@router.post("/api/v1/versions/{kind}/{name}/stage")
def stage_version(
    request: Request, token: Token, kind: str, name: str, project: str, body: StageChange
) -> WireResponse:
    """Move a version to a stage, keeping the history."""
    access_of(request).require_project(token, project, "write")
    version = server_state(request).registry.stage_version(
        project, kind, name, body.stage, body.reason, body.message
    )
    return WireResponse(version_to_wire(version))


@router.post("/api/v1/versions/{kind}/{name}/transfer")
def transfer_version(
    request: Request, token: Token, kind: str, name: str, project: str, body: Transfer
) -> WireResponse:
    """Move a version to another project."""
    access = access_of(request)
    access.require_project(token, project, "write")
    access.require_project(token, body.to_project, "write")
    version = server_state(request).registry.transfer_version(project, kind, name, body.to_project)
    return WireResponse(version_to_wire(version))


@router.get("/api/v1/stage-holders/{kind}/{stage}")
def stage_holder(
    request: Request, token: Token, kind: str, stage: str, project: str
) -> WireResponse:
    """Return ``{"version": ...}``: the version that most recently entered ``stage``, or null."""
    access_of(request).require_project(token, project, "read")
    holder = server_state(request).registry.stage_holder(project, kind, stage)
    return WireResponse({"version": None if holder is None else version_to_wire(holder)})
