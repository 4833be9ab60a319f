"""Time-limited signed URLs for stores that cannot sign their own (local folders).

An S3 store signs real S3 URLs (see :mod:`ensign.storage.s3`).  A folder store has nobody
to sign for it, so ensign signs its own: an HMAC-SHA256 over the HTTP method, the object
key and the expiry time, with a secret only the signer (the server) holds.  A URL whose
method, key or expiry was changed, or whose expiry has passed, is refused; signatures
are compared in constant time.

The server of a later issue serves such URLs for folder stores; anything that holds the
secret can verify them::

    signer = HmacSigner(load_or_create_secret(folder / "signing.key"))
    url = signer.sign_url("http://host:8765/files", "GET", "a/b.bin", expires_in=3600)
    ...
    refusal = signer.check_query("GET", "a/b.bin", request.query)   # None when valid
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import quote, urlencode

from ensign.errors import ConfigurationError, InvalidArtifactArgument

__all__ = [
    "EXPIRES_PARAM",
    "MAX_EXPIRES_IN",
    "MIN_SECRET_BYTES",
    "SIGNATURE_PARAM",
    "HmacSigner",
    "Signer",
    "check_expires_in",
    "load_or_create_secret",
]

#: The longest a signed URL may live: 7 days, the limit of S3's own (SigV4) signatures.
MAX_EXPIRES_IN = 7 * 24 * 3600
#: A secret shorter than this is refused.
MIN_SECRET_BYTES = 32
#: Query parameters of a URL signed by :class:`HmacSigner`.
EXPIRES_PARAM = "X-Ensign-Expires"
SIGNATURE_PARAM = "X-Ensign-Signature"

_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE"})


def check_expires_in(expires_in_seconds: object) -> int:
    """Return ``expires_in_seconds`` when it is a whole number in ``1..604800``.

    Raises:
        InvalidArtifactArgument: for anything else (zero, negative, more than 7 days,
            not an integer).
    """
    if isinstance(expires_in_seconds, bool) or not isinstance(expires_in_seconds, int):
        raise InvalidArtifactArgument(
            f"expires_in_seconds must be a whole number of seconds, got {expires_in_seconds!r}"
        )
    if expires_in_seconds <= 0:
        raise InvalidArtifactArgument(
            f"expires_in_seconds must be positive, got {expires_in_seconds}"
        )
    if expires_in_seconds > MAX_EXPIRES_IN:
        raise InvalidArtifactArgument(
            f"expires_in_seconds must be at most {MAX_EXPIRES_IN} (7 days), "
            f"got {expires_in_seconds}"
        )
    return expires_in_seconds


@runtime_checkable
class Signer(Protocol):
    """Signs and checks ``(method, key, expiry)`` triples; what a server needs for a store."""

    def sign(self, method: str, key: str, expires_at: int) -> str:
        """Return the signature of ``method`` on ``key`` valid until ``expires_at`` (Unix time)."""
        ...

    def check(
        self, method: str, key: str, expires_at: int, signature: str, *, now: float | None = None
    ) -> str | None:
        """Return why the signature is refused, or ``None`` when it is valid now."""
        ...


class HmacSigner:
    """HMAC-SHA256 signatures over method, key and expiry.

    Args:
        secret: At least :data:`MIN_SECRET_BYTES` random bytes, kept by the signer only.

    Raises:
        ConfigurationError: for a secret that is too short.
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"a signing secret needs at least {MIN_SECRET_BYTES} bytes, got {len(secret)}"
            )
        self._secret = bytes(secret)

    def __repr__(self) -> str:
        return "HmacSigner(<secret>)"

    @staticmethod
    def _message(method: str, key: str, expires_at: int) -> bytes:
        verb = method.upper()
        if verb not in _METHODS:
            raise InvalidArtifactArgument(
                f"cannot sign HTTP method {method!r}; use one of {', '.join(sorted(_METHODS))}"
            )
        if not key or any(c in key for c in "\n\r\x00"):
            raise InvalidArtifactArgument(f"cannot sign key {key!r}: empty or has a control char")
        return f"{verb}\n{key}\n{int(expires_at)}".encode()

    def sign(self, method: str, key: str, expires_at: int) -> str:
        """Return the hex HMAC-SHA256 of ``method``, ``key`` and ``expires_at``.

        Raises:
            InvalidArtifactArgument: an unknown HTTP method or an empty key.
        """
        message = self._message(method, key, expires_at)
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def check(
        self, method: str, key: str, expires_at: int, signature: str, *, now: float | None = None
    ) -> str | None:
        """Return why a signature is refused (``"expired"``, ``"bad signature"``) or ``None``.

        The signature is compared in constant time; an expired URL is refused even when its
        signature is right.
        """
        try:
            expected = self.sign(method, key, expires_at)
        except InvalidArtifactArgument:
            return "bad signature"
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            return "bad signature"
        if (time.time() if now is None else now) >= expires_at:
            return "expired"
        return None

    def verify(
        self, method: str, key: str, expires_at: int, signature: str, *, now: float | None = None
    ) -> bool:
        """Return whether the signature is valid and not expired."""
        return self.check(method, key, expires_at, signature, now=now) is None

    def sign_url(
        self,
        base_url: str,
        method: str,
        key: str,
        *,
        expires_in: int,
        now: float | None = None,
    ) -> str:
        """Return ``base_url/key?X-Ensign-Expires=...&X-Ensign-Signature=...``.

        Raises:
            InvalidArtifactArgument: ``expires_in`` is not in ``1..604800``, or a bad method
                or key.
        """
        expires_at = int(time.time() if now is None else now) + check_expires_in(expires_in)
        signature = self.sign(method, key, expires_at)
        query = urlencode({EXPIRES_PARAM: str(expires_at), SIGNATURE_PARAM: signature})
        return f"{base_url.rstrip('/')}/{quote(key, safe='/')}?{query}"

    def check_query(
        self, method: str, key: str, query: Mapping[str, str], *, now: float | None = None
    ) -> str | None:
        """Check the query parameters of a URL made by :meth:`sign_url`; ``None`` when valid."""
        raw_expires = query.get(EXPIRES_PARAM)
        signature = query.get(SIGNATURE_PARAM)
        if raw_expires is None or signature is None:
            return "not signed"
        try:
            expires_at = int(raw_expires)
        except ValueError:
            return "bad signature"
        return self.check(method, key, expires_at, signature, now=now)


def load_or_create_secret(path: str | os.PathLike[str]) -> bytes:
    """Return the signing secret kept in ``path``, creating it (mode 0600) when missing.

    Two processes that race to create it end up with the same secret: the file is
    created exclusively and the loser reads the winner's.

    Raises:
        ConfigurationError: the file exists but holds no usable secret.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(MIN_SECRET_BYTES) + "\n")
    text = ""
    for _ in range(50):  # a racing creator may not have written its secret yet
        text = target.read_text().strip()
        if text:
            break
        time.sleep(0.01)
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"{target} holds no usable signing secret (expected {2 * MIN_SECRET_BYTES} hex "
            "characters); delete it to make a new one"
        )
    return secret
