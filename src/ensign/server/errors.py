"""How the server reports errors: ``{"error": {"type", "message"}}`` with the table's status.

Every :class:`~ensign.errors.EnsignError` maps to the status of
:data:`ensign.errors.HTTP_STATUS`; a request that fails validation (a missing, unknown or
mistyped field) is an :class:`~ensign.errors.InvalidRequest` (400) whose message names
the field.  The REST client maps ``type`` back to the same class.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ensign.errors import EnsignError, InvalidRequest, NotFound, http_status_for

__all__ = ["error_response", "install_error_handlers"]

_log = logging.getLogger("ensign.server")


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return False


def error_response(error: EnsignError) -> JSONResponse:
    """Return the JSON error answer for ``error``, its public attributes as ``details``.

    ``details`` (``valid`` of ``InvalidStage``, ``column`` of ``InvalidCondition``, ...)
    lets the REST client rebuild the very same exception.
    """
    payload: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    details = {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in vars(error).items()
        if not name.startswith("_") and _plain(value)
    }
    if details:
        payload["details"] = details
    return JSONResponse({"error": payload}, status_code=http_status_for(error))


def _describe(errors: list[object]) -> str:
    parts = []
    for item in errors:
        if not isinstance(item, dict):
            continue
        where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body",))
        message = str(item.get("msg", "invalid"))
        if item.get("type") == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Make ``app`` answer every error in the one JSON form."""

    @app.exception_handler(EnsignError)
    async def _ensign(_request: Request, error: EnsignError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(InvalidRequest(_describe(list(error.errors()))))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = "NotFound" if error.status_code == 404 else "HTTPError"
        if error.status_code == 404 and error.detail == "Not Found":
            message = "no such endpoint"
        else:
            message = str(error.detail)
        if error.status_code == 404:
            return error_response(NotFound(message))
        return JSONResponse(
            {"error": {"type": kind, "message": message}}, status_code=error.status_code
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, error: Exception) -> JSONResponse:
        # The details (SQL, URLs, paths) go to the server's log, never to the client.
        incident = uuid.uuid4().hex[:12]
        _log.error(
            "unexpected error %s on %s %s", incident, request.method, request.url.path,
            exc_info=error,
        )  # fmt: skip
        message = f"the server failed unexpectedly (incident {incident}, in its log)"
        return JSONResponse(
            {"error": {"type": "InternalError", "message": message}}, status_code=500
        )
