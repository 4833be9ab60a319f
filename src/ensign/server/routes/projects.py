"""Projects and store-wide settings of the native API.

A project key may hold one ``/`` (``owner/name``), so a project is named by the *last*
part of a path only where nothing follows it (``GET /api/v1/projects/{project:path}``);
everywhere else (runs, versions) the project travels as the ``project`` query parameter
or body field.

=======  =====================================  ======================================
method   path                                   what (role)
=======  =====================================  ======================================
GET      ``/api/v1/projects``                   every project (global ``read``)
POST     ``/api/v1/projects``                   create ``{key, description}`` (global
                                                ``admin``); 409 when taken
POST     ``/api/v1/projects/ensure``            get or create ``{key}`` (``write``)
GET      ``/api/v1/projects/{project:path}``    one project, by key or id (``read``)
GET      ``/api/v1/settings/{key}``             ``{key, value}`` (global ``admin``)
POST     ``/api/v1/settings/{key}``             remember ``{value}`` unless set; answers
                                                the value in force (global ``admin``)
=======  =====================================  ======================================

The server's signing secret is a setting too; it is never read or written over HTTP.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request

from ensign.errors import Forbidden
from ensign.registry.wire import project_to_wire
from ensign.server.auth import Token, server_state
from ensign.server.idempotency import WireResponse, access_of, native_router
from ensign.server.state import SIGNING_SECRET_SETTING

__all__ = ["router"]

router = native_router("projects")


class NewProject(BaseModel):
    """The body of ``POST /api/v1/projects``."""

    model_config = ConfigDict(extra="forbid")
    key: str
    description: str | None = None


class EnsureProject(BaseModel):
    """The body of ``POST /api/v1/projects/ensure``."""

    model_config = ConfigDict(extra="forbid")
    key: str


class SettingValue(BaseModel):
    """The body of ``POST /api/v1/settings/{key}``."""

    model_config = ConfigDict(extra="forbid")
    value: str


@router.get("/api/v1/projects")
def list_projects(request: Request, token: Token) -> WireResponse:
    """Return every project, by key."""
    access_of(request).require_global(token, "read")
    found = server_state(request).registry.list_projects()
    return WireResponse({"projects": [project_to_wire(p) for p in found]})


@router.post("/api/v1/projects", status_code=201)
def create_project(request: Request, token: Token, body: NewProject) -> WireResponse:
    """Create a project; 409 when the key is taken."""
    access_of(request).require_global(token, "admin")
    project = server_state(request).registry.create_project(body.key, body.description)
    return WireResponse(project_to_wire(project), status_code=201)


@router.post("/api/v1/projects/ensure")
def ensure_project(request: Request, token: Token, body: EnsureProject) -> WireResponse:
    """Return a project, creating it when it does not exist."""
    access_of(request).require_project(token, body.key, "write")
    return WireResponse(project_to_wire(server_state(request).registry.ensure_project(body.key)))


@router.get("/api/v1/projects/{project:path}")
def get_project(request: Request, token: Token, project: str) -> WireResponse:
    """Return a project by key or id."""
    access_of(request).require_project(token, project, "read")
    return WireResponse(project_to_wire(server_state(request).registry.get_project(project)))


def _check_setting(key: str) -> None:
    if key == SIGNING_SECRET_SETTING:
        raise Forbidden(f"the setting {key!r} is not available over HTTP")


@router.get("/api/v1/settings/{key}")
def get_setting(request: Request, token: Token, key: str) -> WireResponse:
    """Return a store-wide setting (``value`` is ``null`` when unset)."""
    access_of(request).require_global(token, "admin")
    _check_setting(key)
    return WireResponse({"key": key, "value": server_state(request).registry.get_setting(key)})


@router.post("/api/v1/settings/{key}")
def remember_setting(request: Request, token: Token, key: str, body: SettingValue) -> WireResponse:
    """Set a store-wide setting unless it is set already; answer the value in force."""
    access_of(request).require_global(token, "admin")
    _check_setting(key)
    value = server_state(request).registry.remember_setting(key, body.value)
    return WireResponse({"key": key, "value": value})
