"""What every native route shares: ``Idempotency-Key`` replays, structured errors, lenient JSON.

**Idempotency.** A mutating request (``POST``, ``PUT``, ``PATCH``, ``DELETE``) that carries
an ``Idempotency-Key`` header is executed once.  Before it runs, a placeholder row claims
the key in the ``idempotency_keys`` table (so two servers racing on the same key run it
once); when it has answered, the status and body of that first answer are stored and every
retry with the same key gets them back, marked ``Idempotent-Replayed: true``.  A key is
scoped to the bearer token, the method and the path, so nobody replays another client's
answers; reusing a key for a different body is refused (400).  Answers of 500 and more are
not stored (the placeholder is released), so a retry after a server failure runs again.
A retry that arrives while the first request is still running waits for its answer.

**Errors.** An :class:`~ensign.errors.EnsignError` is answered as
``{"error": {"type", "message", "details"}}`` with the status of
:data:`ensign.errors.HTTP_STATUS`; ``details`` holds the public attributes of the error
(``valid`` of ``InvalidStage``, ``column`` of ``InvalidCondition``, ...), so the REST client
rebuilds the very same exception.

**JSON.** Answers are written with ``NaN`` and ``Infinity`` allowed (Python's JSON), as
params may hold them; metric values travel as strings (see :mod:`ensign.registry.wire`).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from ensign.errors import Conflict, EnsignError, InvalidRequest
from ensign.registry.sql.dialect import insert_ignore
from ensign.registry.sql.engine import write_transaction
from ensign.registry.sql.schema import idempotency_keys
from ensign.server.auth import Access, authenticate, server_state
from ensign.server.errors import error_response

__all__ = [
    "HEADER",
    "REPLAYED_HEADER",
    "IdempotencyStore",
    "NativeRoute",
    "StoredAnswer",
    "WireResponse",
    "access_of",
    "native_router",
]

#: The request header naming an idempotent request.
HEADER = "Idempotency-Key"
#: Set on an answer that is a replay of the first one.
REPLAYED_HEADER = "Idempotent-Replayed"

_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_KEY = 200
_PENDING = 0  # status_code of a claimed key whose request is still running
_STALE_SECONDS = 900.0  # a claim this old belongs to a server that died mid-request
_WAIT_SECONDS = 30.0  # how long a retry waits for the first request's answer
_KEEP_SECONDS = 24 * 3600.0  # stored answers older than this are forgotten
_Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class WireResponse(Response):
    """A JSON answer that may hold ``NaN`` and infinities (Python's JSON dialect)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Encode ``content`` compactly."""
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def access_of(request: Request) -> Access:
    """Return the :class:`~ensign.server.auth.Access` of the app serving ``request``."""
    access: Access = request.app.state.access
    return access


@dataclass(frozen=True)
class StoredAnswer:
    """The first answer to an idempotent request.

    Attributes:
        fingerprint: sha256 of the request's query and body.
        status_code: Its HTTP status.
        body: Its body (JSON text, or empty).
    """

    fingerprint: str
    status_code: int
    body: str


class IdempotencyStore:
    """Claims, stores and replays answers in the ``idempotency_keys`` table.

    Args:
        engine: The registry's database.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def claim(self, slot: str, fingerprint: str) -> StoredAnswer | str:
        """Claim ``slot`` for a request; return the stored answer when it already has one.

        Waits while another request holds the claim; takes over a claim that is stale
        (its server died while the request ran), only if nobody took it over meanwhile.
        Returns the claim (to pass to :meth:`save` or :meth:`release`) when it is ours.

        Raises:
            Conflict: the first request is still running after the wait.
        """
        owner = uuid.uuid4().hex
        placeholder = json.dumps({"fingerprint": fingerprint, "owner": owner})
        deadline = time.monotonic() + _WAIT_SECONDS
        while True:
            now = time.time()
            with write_transaction(self.engine) as conn:
                if random.random() < 0.01:
                    conn.execute(
                        idempotency_keys.delete().where(
                            idempotency_keys.c.created_at < now - _KEEP_SECONDS
                        )
                    )
                conn.execute(
                    insert_ignore(conn, idempotency_keys, ["key"]).values(
                        key=slot, status_code=_PENDING, response=placeholder, created_at=now
                    )
                )
                row = conn.execute(
                    sa.select(idempotency_keys).where(idempotency_keys.c.key == slot)
                ).one()
                stored = json.loads(row.response)
                if row.status_code != _PENDING:
                    return StoredAnswer(stored["fingerprint"], row.status_code, stored["body"])
                if stored.get("owner") == owner:
                    return placeholder
                if now - row.created_at > _STALE_SECONDS:
                    taken = conn.execute(
                        idempotency_keys.update()
                        .where(
                            idempotency_keys.c.key == slot,
                            idempotency_keys.c.status_code == _PENDING,
                            idempotency_keys.c.response == row.response,
                        )
                        .values(response=placeholder, created_at=now)
                    )
                    if taken.rowcount == 1:
                        return placeholder
            if time.monotonic() > deadline:
                raise Conflict(
                    f"a request with this {HEADER} is still being processed; retry later"
                )
            time.sleep(0.05)

    def save(self, slot: str, claim: str, fingerprint: str, status_code: int, body: bytes) -> None:
        """Store the first answer of the request that claimed ``slot`` (if it still holds it)."""
        text = json.dumps({"fingerprint": fingerprint, "body": body.decode("utf-8")})
        with write_transaction(self.engine) as conn:
            conn.execute(
                idempotency_keys.update()
                .where(idempotency_keys.c.key == slot, idempotency_keys.c.response == claim)
                .values(status_code=status_code, response=text, created_at=time.time())
            )

    def release(self, slot: str, claim: str) -> None:
        """Forget a claim whose request failed without an answer worth replaying."""
        with write_transaction(self.engine) as conn:
            conn.execute(
                idempotency_keys.delete().where(
                    idempotency_keys.c.key == slot,
                    idempotency_keys.c.status_code == _PENDING,
                    idempotency_keys.c.response == claim,
                )
            )


def _sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


async def _run_once(request: Request, key: str, handler: _Handler) -> Response:
    if not key.strip() or len(key) > _MAX_KEY:
        raise InvalidRequest(f"an {HEADER} must have 1 to {_MAX_KEY} characters")
    # Only a known token may claim a key: no row is written for a stranger's request.
    if "authorization" not in request.headers:
        return await handler(request)  # signed URLs carry their own authority
    await run_in_threadpool(authenticate, request)
    body = await request.body()  # cached on the request: the handler reads it again
    token = request.headers.get("authorization", "").encode()
    slot = _sha256(token, request.method.encode(), request.url.path.encode(), key.encode())
    fingerprint = _sha256(request.url.query.encode(), body)
    store = IdempotencyStore(server_state(request).registry.engine)
    stored = await run_in_threadpool(store.claim, slot, fingerprint)
    if isinstance(stored, StoredAnswer):
        if stored.fingerprint != fingerprint:
            raise InvalidRequest(f"this {HEADER} was already used for a different request")
        return Response(
            stored.body,
            status_code=stored.status_code,
            media_type="application/json" if stored.body else None,
            headers={REPLAYED_HEADER: "true"},
        )
    try:
        try:
            response = await handler(request)
        except EnsignError as error:
            response = error_response(error)
    except BaseException:
        await run_in_threadpool(store.release, slot, stored)
        raise
    if response.status_code >= 500:
        await run_in_threadpool(store.release, slot, stored)
        return response
    await run_in_threadpool(
        store.save, slot, stored, fingerprint, response.status_code, bytes(response.body)
    )
    return response


class NativeRoute(APIRoute):
    """A route of the native API: idempotent mutations and errors with their details."""

    def get_route_handler(self) -> _Handler:
        """Wrap FastAPI's handler with the idempotency and error handling above."""
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                key = request.headers.get(HEADER)
                if key is not None and request.method in _MUTATING:
                    return await _run_once(request, key, handler)
                return await handler(request)
            except EnsignError as error:
                return error_response(error)

        return run


def native_router(tag: str) -> APIRouter:
    """Return a router of the native API (its routes are :class:`NativeRoute`)."""
    return APIRouter(route_class=NativeRoute, default_response_class=WireResponse, tags=[tag])
