"""``RemoteBlobStore``: the blob store of an ``ensign server``, reached without credentials.

Files are hashed here (with the stat cache, so an unchanged file is not hashed again);
the server says which digests its store lacks and hands out a signed URL for each
(``POST /api/v1/blobs/missing``); only those are uploaded, straight to the URL (S3
itself, or the server's own signed endpoint), streamed from the file.  Downloads go the
same way (``POST /api/v1/blobs/downloads``) and every digest is verified before the
file appears.  The client never needs store credentials.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from ensign.errors import ArtifactNotFound, ConfigurationError, DigestMismatch, IntegrityError
from ensign.registry.rest.session import RestSession, error_from_answer
from ensign.storage.blobstore import GarbageReport, StoredBlob
from ensign.storage.hashing import Progress, sha256_file
from ensign.storage.statcache import StatCache
from ensign.storage.transfer import write_verified

__all__ = ["RemoteBlobStore"]

_BLOBS = "/api/v1/blobs"
_CHUNK = 1024 * 1024
_BATCH = 1000  # digests per request


class _FileBody:
    """A file sent in chunks, with its length (so it is not sent chunked-encoded)."""

    def __init__(self, path: Path, size: int, progress: Progress | None) -> None:
        self._file: IO[bytes] = open(path, "rb")  # noqa: SIM115  # closed by close()
        self._size = size
        self._progress = progress

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self._file.read(_CHUNK):
            if self._progress is not None:
                self._progress(len(chunk))
            yield chunk

    def close(self) -> None:
        self._file.close()


class RemoteBlobStore:
    """The blobs of one store that an ``ensign server`` serves.

    Args:
        session: The server's session.
        uri: The store's URI as the server names it (one a ref or version names);
            ``None`` for the server's own store, whose URI is asked for on first use, so
            that opening a backend needs no server (a run may go to the offline spool).
        stat_cache: Remembers digests of local files so unchanged files are not re-hashed.
    """

    def __init__(
        self, session: RestSession, uri: str | None = None, *, stat_cache: StatCache | None = None
    ) -> None:
        self.session = session
        self._uri = None if uri is None else uri.rstrip("/")
        self._uri_lock = threading.Lock()
        self.stat_cache = stat_cache

    @property
    def uri(self) -> str:
        """The store's URI as the server names it; asked of the server on first use.

        Raises:
            ServerUnavailable: the server cannot be reached (only before it first answered).
        """
        with self._uri_lock:
            if self._uri is None:
                answer = self.session.call("GET", f"{_BLOBS}/store")
                self._uri = str(answer["uri"]).rstrip("/")
            return self._uri

    @classmethod
    def of_server(
        cls, session: RestSession, *, stat_cache: StatCache | None = None
    ) -> RemoteBlobStore:
        """Return the store the server puts new bytes in (its URI is asked for when needed)."""
        return cls(session, None, stat_cache=stat_cache)

    def at(self, uri: str) -> RemoteBlobStore:
        """Return another store of the same server (one a ref or version names)."""
        return RemoteBlobStore(self.session, uri, stat_cache=self.stat_cache)

    def __repr__(self) -> str:
        return f"RemoteBlobStore({self.session.base_url!r}, {self._uri!r})"

    # paths --------------------------------------------------------------------------------

    def blob_uri(self, digest: str) -> str:
        """Return the URL of a blob in the server's store (for display and lineage)."""
        return f"{self.uri}/blobs/sha256/{digest[:2]}/{digest[2:]}"

    # queries ------------------------------------------------------------------------------

    def _ask(self, what: str, digests: list[str], *, uploads: bool) -> dict[str, Any]:
        """Ask ``missing`` or ``downloads`` about ``digests``, in batches; merge the answers."""
        merged: dict[str, Any] = {"missing": [], "uploads": {}, "downloads": {}}
        for start in range(0, len(digests), _BATCH):
            payload = {
                "digests": digests[start : start + _BATCH],
                "store_uri": self.uri,
                "uploads": uploads,
            }
            answer = self.session.call("POST", f"{_BLOBS}/{what}", payload=payload)
            merged["missing"] += answer.get("missing", [])
            merged["uploads"].update(answer.get("uploads", {}))
            merged["downloads"].update(answer.get("downloads", {}))
        return merged

    def has(self, digest: str) -> bool:
        """Return whether the store holds the blob ``digest``."""
        return not self.missing([digest])

    def missing(self, digests: Iterable[str]) -> set[str]:
        """Return those of ``digests`` the store does not hold."""
        wanted = sorted(set(digests))
        if not wanted:
            return set()
        return set(self._ask("missing", wanted, uploads=False)["missing"])

    def digest_of(self, path: str | os.PathLike[str]) -> str:
        """Return the sha256 of a local file, from the stat cache when it is unchanged."""
        if self.stat_cache is not None:
            return self.stat_cache.digest_of(path)
        return sha256_file(path)

    # writing ------------------------------------------------------------------------------

    def _upload(self, target: dict[str, Any], body: Any, what: str) -> None:
        headers = {str(k): str(v) for k, v in (target.get("headers") or {}).items()}
        response = self.session.send(
            str(target.get("method", "PUT")),
            str(target["url"]),
            body=body,
            headers=headers,
            authorized=False,
        )
        if response.status_code >= 400:
            raise error_from_answer(response, what)

    def put_file(
        self,
        path: str | os.PathLike[str],
        *,
        digest: str | None = None,
        progress: Progress | None = None,
    ) -> StoredBlob:
        """Store a local file's bytes once, uploading them only when the store lacks them.

        Raises:
            ArtifactNotFound: the file does not exist.
            DigestMismatch: the file's bytes do not hash to ``digest``.
            IntegrityError: the file changed while it was uploaded; nothing was stored.
            ServerUnavailable: the server cannot be reached.
        """
        source = Path(path)
        try:
            st = os.stat(source)
        except FileNotFoundError:
            raise ArtifactNotFound(f"no such file: {source}") from None
        actual = self.digest_of(source)
        if digest is not None and actual != digest:
            raise DigestMismatch(str(source), digest, actual)
        targets = self._ask("missing", [actual], uploads=True)["uploads"]
        if actual not in targets:
            if progress is not None:
                progress(st.st_size)
            return StoredBlob(actual, st.st_size, uploaded=False)
        try:
            self._upload(
                targets[actual],
                lambda: _FileBody(source, st.st_size, progress),
                f"the upload of {source}",
            )
        except IntegrityError:
            changed = True
        else:
            after = os.stat(source)
            changed = (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns)
        if changed:
            raise IntegrityError(f"{source} changed while it was uploaded; nothing was stored")
        return StoredBlob(actual, st.st_size, uploaded=True)

    def put_bytes(self, data: bytes) -> StoredBlob:
        """Store ``data`` once and return its digest."""
        digest = hashlib.sha256(data).hexdigest()
        targets = self._ask("missing", [digest], uploads=True)["uploads"]
        if digest not in targets:
            return StoredBlob(digest, len(data), uploaded=False)
        self._upload(targets[digest], bytes(data), f"the upload of sha256 {digest}")
        return StoredBlob(digest, len(data), uploaded=True)

    # reading ------------------------------------------------------------------------------

    def get_file(
        self,
        digest: str,
        target: str | os.PathLike[str],
        *,
        label: str | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Download a blob to a local file, verifying its digest; return its size.

        The file appears at ``target`` only once verified.

        Raises:
            ArtifactNotFound: the store lacks the blob.
            DigestMismatch: the bytes do not hash to ``digest``; names ``label`` (the
                file's path in the version) when given.
        """
        answer = self._ask("downloads", [digest], uploads=False)
        found = answer["downloads"].get(digest)
        if found is None:
            raise ArtifactNotFound(f"the store {self.uri} lacks the blob of {label or digest}")
        what = f"the download of {label or digest}"

        def fill(writer: BinaryIO) -> tuple[str, int]:
            response = self.session.send(
                str(found.get("method", "GET")), str(found["url"]), stream=True, authorized=False
            )
            with response:
                if response.status_code >= 400:
                    raise error_from_answer(response, what)
                hasher = hashlib.sha256()
                size = 0
                for chunk in response.iter_content(_CHUNK):
                    hasher.update(chunk)
                    writer.write(chunk)
                    size += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
            return hasher.hexdigest(), size

        return write_verified(target, digest, label or self.blob_uri(digest), fill)

    # administration -----------------------------------------------------------------------

    def collect_garbage(
        self, referenced: set[str], *, grace_seconds: float = 3600.0, dry_run: bool = False
    ) -> GarbageReport:
        """Refuse: garbage is collected where the store is, not through its server.

        Raises:
            ConfigurationError: always; run ``ensign gc`` with the server's own tracking URI.
        """
        raise ConfigurationError(
            f"{self.session.base_url} is a server: run 'ensign gc' on its store, with the "
            "server's own --tracking-uri (its database)"
        )
