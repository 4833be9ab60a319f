"""Bearer-token authentication and per-project roles.

``Authorization: Bearer TOKEN``: no token, or one the server does not know (or that has
expired), is 401; a token whose project or role does not cover the request is 403.
Roles are ordered ``read`` < ``write`` < ``admin``; a token without a project covers
every project.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Annotated

from fastapi import Depends, Request

from ensign.errors import Forbidden, Unauthorized
from ensign.registry.sql.tokens import TokenRecord, find_token, role_rank
from ensign.server.state import ServerState

__all__ = ["Access", "Token", "authenticate", "server_state"]

_RUN_PROJECTS = 4096  # runs whose project is remembered (a run never changes project)
_TOKENS = 1024  # tokens whose record is remembered for a little while
#: Seconds a token's record is used without reading it again (the hot path of every request).
TOKEN_TTL = 10.0


def server_state(request: Request) -> ServerState:
    """Return the :class:`ServerState` of the app serving ``request``."""
    state: ServerState = request.app.state.ensign
    return state


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("no token: send 'Authorization: Bearer TOKEN'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer TOKEN'")
    return token.strip()


def authenticate(request: Request) -> TokenRecord:
    """Return the token record of a request (a FastAPI dependency).

    Raises:
        Unauthorized: no token, an unknown one, or an expired one.
    """
    token = _bearer(request)
    access: Access = request.app.state.access
    record = access.token_record(token)
    if record is None:
        raise Unauthorized("unknown token")
    if record.expires_at is not None and record.expires_at <= time.time():
        raise Unauthorized("the token has expired")
    return record


#: A route parameter that authenticates the request: ``def route(token: Token) -> ...``.
Token = Annotated[TokenRecord, Depends(authenticate)]


class Access:
    """Decides what a token may do.

    Args:
        state: The server's state (for the project of a run).
    """

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._run_projects: OrderedDict[str, str] = OrderedDict()
        self._tokens: OrderedDict[str, tuple[float, TokenRecord | None]] = OrderedDict()
        self._lock = threading.Lock()

    def token_record(self, token: str) -> TokenRecord | None:
        """Return the stored record of a token (``None`` for an unknown one).

        A record read less than :data:`TOKEN_TTL` seconds ago is used again, so most
        requests cost no query for their token.
        """
        now = time.monotonic()
        with self._lock:
            known = self._tokens.get(token)
        if known is not None and now - known[0] < TOKEN_TTL:
            return known[1]
        with self.state.registry.engine.connect() as conn:
            record = find_token(conn, token)
        with self._lock:
            self._tokens[token] = (now, record)
            self._tokens.move_to_end(token)
            while len(self._tokens) > _TOKENS:
                self._tokens.popitem(last=False)
        return record

    @staticmethod
    def require_role(token: TokenRecord, role: str) -> None:
        """Allow a token with at least ``role``, whatever projects it covers.

        Raises:
            Forbidden: its role is too weak.
        """
        if role_rank(token.role) < role_rank(role):
            raise Forbidden(f"this token's role is {token.role!r}; the request needs {role!r}")

    def require_global(self, token: TokenRecord, role: str) -> None:
        """Allow only a token for every project with at least ``role``.

        Raises:
            Forbidden: a project token, or too weak a role.
        """
        if token.project_id is not None:
            raise Forbidden(f"this token covers only the project {token.project_key!r}")
        self.require_role(token, role)

    def require_project(self, token: TokenRecord, project: str, role: str) -> None:
        """Allow a token that covers ``project`` (its key or id) with at least ``role``.

        Raises:
            Forbidden: the token covers another project, or its role is too weak.
        """
        if token.project_id is not None and project not in (token.project_id, token.project_key):
            raise Forbidden(f"this token covers the project {token.project_key!r}, not {project!r}")
        self.require_role(token, role)

    def project_of_run(self, run_uuid: str) -> str:
        """Return the project key of a run.

        Raises:
            RunNotFound: when no run has this id.
        """
        with self._lock:
            known = self._run_projects.get(run_uuid)
        if known is not None:
            return known
        project = self.state.registry.get_run(run_uuid).project
        with self._lock:
            self._run_projects[run_uuid] = project
            while len(self._run_projects) > _RUN_PROJECTS:
                self._run_projects.popitem(last=False)
        return project

    def require_run(self, token: TokenRecord, run_uuid: str, role: str) -> str:
        """Allow a token that covers the run's project; return that project's key.

        Raises:
            RunNotFound: no such run.
            Forbidden: the token does not cover its project, or its role is too weak.
        """
        project = self.project_of_run(run_uuid)
        self.require_project(token, project, role)
        return project
