"""A limit on request bodies, enforced while they arrive (413 beyond it)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ensign.errors import PayloadTooLarge
from ensign.server.errors import error_response

__all__ = ["BodyLimit"]


class BodyLimit:
    """ASGI middleware refusing bodies larger than the limit its function gives for a path.

    A declared ``Content-Length`` over the limit is refused before anything is read; a
    body without one is counted as it streams and cut off at the limit.

    Args:
        app: The application.
        limit_for: Path -> the most bytes a body to it may have.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a request, refusing its body once it exceeds the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(scope, receive, send, limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(_message(limit), limit)
            return message

        await self.app(scope, counted, send)


def _message(limit: int) -> str:
    return f"the request body is larger than this endpoint's limit of {limit} bytes"


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = error_response(PayloadTooLarge(_message(limit), limit))
    await response(scope, receive, send)
