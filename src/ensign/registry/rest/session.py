"""The HTTP session of the REST client: token, timeouts, retries, idempotency, error mapping.

Every request is retried with exponential backoff when the server cannot be reached (a
connection error or a timeout) or answers a 5xx that is not a deliberate ensign error
(a proxy's 502/503/504, a crash, ``ServerUnavailable``).  A mutating request carries an
``Idempotency-Key`` (a fresh uuid4, the same on each retry of it), so a retry of a request
that did reach the server replays its first answer instead of running twice.  After the
last try :class:`~ensign.errors.ServerUnavailable` names the URL.

An error answer ``{"error": {"type", "message", "details"}}`` is raised as the class of
:mod:`ensign.errors` that ``type`` names, with the same message (and attributes, from
``details``) as in embedded mode.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from ensign import __version__, errors
from ensign.errors import EnsignError, ServerUnavailable

__all__ = ["TOKEN_ENV", "Body", "RestSession", "error_from_answer"]

#: The environment variable holding the bearer token.
TOKEN_ENV = "ENSIGN_TOKEN"
#: What a request sends: bytes, or a function that opens a fresh body for each try.
Body = bytes | Callable[[], "IO[bytes] | Iterable[bytes]"] | None

_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NOT_AN_ANSWER = -1


def _bare(url: str) -> str:
    """Return ``url`` without its query (which may hold a signature)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _error_payload(response: requests.Response) -> dict[str, Any] | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and isinstance(error.get("type"), str):
        return error
    return None


def _error_class(name: str) -> type[EnsignError] | None:
    found = getattr(errors, name, None)
    if isinstance(found, type) and issubclass(found, EnsignError):
        return found
    return None


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def error_from_answer(response: requests.Response, what: str) -> EnsignError:
    """Return the exception an error answer stands for.

    A ``type`` that names a class of :mod:`ensign.errors` gives that class, built without
    its ``__init__`` (whose arguments differ from class to class) so that its message is
    exactly the server's; ``details`` restores its attributes.  Anything else becomes an
    :class:`~ensign.errors.EnsignError` naming ``what`` and the status.
    """
    payload = _error_payload(response)
    cls = _error_class(str(payload["type"])) if payload is not None else None
    if payload is None or cls is None:
        text = payload["message"] if payload is not None else response.text[:500].strip()
        return EnsignError(f"{what}: HTTP {response.status_code}: {text}")
    error = cls.__new__(cls)
    Exception.__init__(error, str(payload.get("message", "")))
    details = payload.get("details")
    if isinstance(details, dict):
        for name, value in details.items():
            if isinstance(name, str) and not name.startswith("_"):
                setattr(error, name, _tuples(value))
    return error


def _retryable(response: requests.Response) -> bool:
    if response.status_code < 500:
        return False
    payload = _error_payload(response)
    if payload is None:
        return True
    cls = _error_class(str(payload["type"]))
    return cls is None or issubclass(cls, ServerUnavailable)


class RestSession:
    """Talks to one ``ensign server``.

    The retry settings are class attributes (tests lower them); each try waits
    ``backoff * 2**n`` seconds, at most ``max_delay``, and no retry starts after
    ``deadline`` seconds.

    Args:
        base_url: ``http(s)://host:port`` of the server.
        token: The bearer token; else ``ENSIGN_TOKEN`` (read now), else none.
    """

    attempts: int = 6
    backoff: float = 0.25
    max_delay: float = 4.0
    deadline: float = 30.0
    connect_timeout: float = 5.0
    read_timeout: float = 120.0

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self._http = self._session()
        if self.token:
            self._http.headers["Authorization"] = f"Bearer {self.token}"
        # URLs of a store (S3, or the server's signed ones) get no bearer token.
        self._plain = self._session()
        self._scope = threading.local()

    def __repr__(self) -> str:
        return f"RestSession({self.base_url!r})"

    @staticmethod
    def _session() -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = f"ensign/{__version__}"
        return session

    def close(self) -> None:
        """Close the connections."""
        self._http.close()
        self._plain.close()

    @contextlib.contextmanager
    def content_keys(self, scope: str) -> Iterator[None]:
        """Derive the ``Idempotency-Key`` of each mutating call from what it sends.

        Inside the block (in this thread) a call's key is a hash of ``scope``, the method,
        the path, the query and the body instead of a fresh uuid4, so sending the very
        same request again, even from another process (a sync run again after a crash),
        replays the server's first answer instead of writing twice.  Two identical calls
        in one scope are one call.
        """
        previous = getattr(self._scope, "value", None)
        self._scope.value = scope
        try:
            yield
        finally:
            self._scope.value = previous

    def _key_for(
        self, method: str, path: str, params: Mapping[str, Any] | None, body: bytes | None
    ) -> str:
        scope = getattr(self._scope, "value", None)
        if scope is None:
            return uuid.uuid4().hex
        digest = hashlib.sha256()
        query = json.dumps(sorted((params or {}).items()), default=str)
        for part in (scope, method, path, query):
            digest.update(part.encode() + b"\n")
        digest.update(body or b"")
        return f"content-{digest.hexdigest()}"

    # sending ------------------------------------------------------------------------------

    def send(
        self,
        method: str,
        url: str,
        *,
        body: Body = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        stream: bool = False,
        authorized: bool = True,
    ) -> requests.Response:
        """Send a request, retrying while the server is unreachable or failing.

        Returns the first answer that is not retried, whatever its status.

        Raises:
            ServerUnavailable: every try failed; names the URL and the last failure.
        """
        http = self._http if authorized else self._plain
        wait = self.backoff
        started = time.monotonic()
        last = ""
        tries = 0
        while True:
            tries += 1
            data = body() if callable(body) else body
            try:
                response = http.request(
                    method,
                    url,
                    data=data,
                    headers=dict(headers or {}),
                    params=params,
                    stream=stream,
                    timeout=(self.connect_timeout, self.read_timeout),
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if not _retryable(response):
                    return response
                payload = _error_payload(response)
                detail = payload["message"] if payload else response.reason
                last = f"HTTP {response.status_code}: {detail}"
                response.close()
            finally:
                closer = getattr(data, "close", None)
                if callable(closer):
                    closer()
            spent = time.monotonic() - started
            if tries >= self.attempts or spent + wait > self.deadline:
                raise ServerUnavailable(
                    f"cannot reach the ensign server at {_bare(url)} "
                    f"({method}, {tries} tries in {spent:.1f} s): {last}"
                )
            time.sleep(wait)
            wait = min(wait * 2, self.max_delay)

    def call(
        self,
        method: str,
        path: str,
        *,
        payload: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Call the API at ``path`` with a JSON ``payload``; return the decoded answer.

        A mutating call carries an ``Idempotency-Key`` (``idempotency_key``, else one
        derived in a :meth:`content_keys` block, else a fresh uuid4) that stays the same
        on each retry.  An empty answer (204) is ``None``.

        Raises:
            EnsignError: the error the server answered, as its own class.
            ServerUnavailable: the server could not be reached.
        """
        url = f"{self.base_url}{path}"
        headers = {"Accept": "application/json"}
        body = None
        if payload is not None:
            # Python's JSON: params may hold NaN or infinities, as in embedded mode.
            body = json.dumps(payload, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        if method in _MUTATING:
            key = idempotency_key or self._key_for(method, path, params, body)
            headers["Idempotency-Key"] = key
        response = self.send(method, url, body=body, headers=headers, params=params)
        if response.status_code >= 400:
            raise error_from_answer(response, f"{method} {_bare(url)}")
        if not response.content:
            return None
        return response.json()
