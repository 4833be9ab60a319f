"""A content-addressed blob store on any fsspec URL.

Layout under the store's root::

    blobs/sha256/ab/cdef...   one object per sha256, written once, never rewritten
    tmp/<random>.part          uploads in flight; published by rename (or copy) when verified

A blob becomes visible only once its bytes are complete and verified, so a reader never
sees a partial blob, and a process killed mid-upload leaves only a ``tmp/`` object that
:meth:`BlobStore.collect_garbage` removes after a grace period.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ensign.errors import ArtifactNotFound, DigestMismatch, IntegrityError
from ensign.storage.hashing import Progress, sha256_file
from ensign.storage.providers import open_filesystem, protocol_of
from ensign.storage.statcache import StatCache
from ensign.storage.transfer import copy_and_hash, write_verified

__all__ = ["BlobStore", "GarbageReport", "StoredBlob"]

_BLOBS = "blobs/sha256"
_TMP = "tmp"


@dataclass(frozen=True)
class StoredBlob:
    """The outcome of :meth:`BlobStore.put_file`.

    Attributes:
        digest: sha256 of the bytes.
        size: Bytes.
        uploaded: ``False`` when the store already held the blob (no new blob was written).
    """

    digest: str
    size: int
    uploaded: bool


@dataclass(frozen=True)
class GarbageReport:
    """What :meth:`BlobStore.collect_garbage` removed (or would remove on a dry run)."""

    temporary: list[str]
    blobs: list[str]
    freed_bytes: int


class BlobStore:
    """Content-addressed blobs on an fsspec URL.

    Args:
        uri: Any fsspec URL or a local folder.
        stat_cache: Remembers digests of local files so unchanged files are not re-hashed.
        storage_options: Passed to the fsspec filesystem (endpoint, credentials, ...).

    Raises:
        StoreNotAvailable: when the URL's protocol needs a package that is not installed.
    """

    def __init__(
        self,
        uri: str,
        *,
        stat_cache: StatCache | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.uri = uri.rstrip("/")
        self.fs, self.root = open_filesystem(self.uri, storage_options)
        self.stat_cache = stat_cache
        self._local = protocol_of(self.uri) in {"file", "local"}
        # S3 has no rename: blobs go straight to their final key (see ensign.storage.s3).
        self._s3: Any = None
        if protocol_of(self.uri) in {"s3", "s3a"}:
            from ensign.storage.s3 import S3Transfer

            self._s3 = S3Transfer(self.fs)

    def __repr__(self) -> str:
        return f"BlobStore({self.uri!r})"

    # paths --------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        """Return the path of a blob inside the filesystem."""
        _check_digest(digest)
        return f"{self.root}/{_BLOBS}/{digest[:2]}/{digest[2:]}"

    def blob_uri(self, digest: str) -> str:
        """Return the URL of a blob (for display and lineage)."""
        return f"{self.uri}/{_BLOBS}/{digest[:2]}/{digest[2:]}"

    def _tmp_path(self) -> str:
        return f"{self.root}/{_TMP}/{uuid.uuid4().hex}.part"

    # queries ------------------------------------------------------------------------------

    def has(self, digest: str) -> bool:
        """Return whether the store holds the blob ``digest``."""
        if self._s3 is not None:
            return self._s3.has(self.blob_path(digest))  # type: ignore[no-any-return]
        return bool(self.fs.exists(self.blob_path(digest)))

    def missing(self, digests: Iterable[str]) -> set[str]:
        """Return those of ``digests`` the store does not hold."""
        return {d for d in set(digests) if not self.has(d)}

    def digest_of(self, path: str | os.PathLike[str]) -> str:
        """Return the sha256 of a local file, from the stat cache when it is unchanged."""
        if self.stat_cache is not None:
            return self.stat_cache.digest_of(path)
        return sha256_file(path)

    # writing ------------------------------------------------------------------------------

    def put_file(
        self,
        path: str | os.PathLike[str],
        *,
        digest: str | None = None,
        progress: Progress | None = None,
    ) -> StoredBlob:
        """Store a local file's bytes once.

        When the file is unchanged since it was last hashed and the store holds that digest,
        nothing is read or written. A given ``digest`` is checked against the file's bytes
        (hashed once, then remembered) before a stored blob may stand for the file.

        Raises:
            ArtifactNotFound: the file does not exist.
            DigestMismatch: the file's bytes do not hash to ``digest`` (or the file changed
                while it was uploaded); nothing is published.
        """
        source = Path(path)
        try:
            st = os.stat(source)
        except FileNotFoundError:
            raise ArtifactNotFound(f"no such file: {source}") from None
        cached = self.stat_cache.lookup(source) if self.stat_cache is not None else None
        known = cached or digest
        if known is not None and self.has(known):
            # A caller's digest is checked before the stored blob may stand for this file.
            actual = cached or self.digest_of(source)
            if digest is not None and actual != digest:
                raise DigestMismatch(str(source), digest, actual)
            if progress is not None:
                progress(st.st_size)
            return StoredBlob(known, st.st_size, uploaded=False)
        if self._s3 is not None:
            return self._s3.put_file(  # type: ignore[no-any-return]
                self, source, st, digest=digest, known=known, progress=progress
            )
        tmp = self._tmp_path()
        self.fs.makedirs(tmp.rsplit("/", 1)[0], exist_ok=True)
        try:
            with open(source, "rb") as reader, self._open_write(tmp) as writer:
                actual, size = copy_and_hash(reader, writer, progress)
            after = os.stat(source)
            if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                raise IntegrityError(f"{source} changed while it was uploaded; nothing was stored")
            if digest is not None and actual != digest:
                raise DigestMismatch(str(source), digest, actual)
            published = self._publish(tmp, actual)
        except BaseException:
            self._remove_quietly(tmp)
            raise
        if self.stat_cache is not None:
            self.stat_cache.remember(source, actual, st)
        return StoredBlob(actual, size, uploaded=published)

    def put_bytes(self, data: bytes) -> StoredBlob:
        """Store ``data`` once and return its digest."""
        import hashlib

        digest = hashlib.sha256(data).hexdigest()
        if self.has(digest):
            return StoredBlob(digest, len(data), uploaded=False)
        if self._s3 is not None:
            return self._s3.put_blob_bytes(self, data, digest)  # type: ignore[no-any-return]
        tmp = self._tmp_path()
        self.fs.makedirs(tmp.rsplit("/", 1)[0], exist_ok=True)
        try:
            with self._open_write(tmp) as writer:
                writer.write(data)
            published = self._publish(tmp, digest)
        except BaseException:
            self._remove_quietly(tmp)
            raise
        return StoredBlob(digest, len(data), uploaded=published)

    def _open_write(self, path: str) -> Any:
        if self._local:
            return open(path, "wb")
        return self.fs.open(path, "wb")

    def _publish(self, tmp: str, digest: str) -> bool:
        """Move ``tmp`` to the blob's place; ``False`` when the blob was already there."""
        final = self.blob_path(digest)
        if self.fs.exists(final):
            # Another writer published the same bytes first; blobs are never rewritten.
            self._remove_quietly(tmp)
            return False
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        if self._local:
            os.replace(tmp, final)
        else:
            self.fs.mv(tmp, final)
        return True

    def _remove_quietly(self, path: str) -> None:
        try:
            if self.fs.exists(path):
                self.fs.rm(path)
        except OSError:
            pass  # a leftover in tmp/ is collected by gc; the original error matters more

    # reading ------------------------------------------------------------------------------

    def get_file(
        self,
        digest: str,
        target: str | os.PathLike[str],
        *,
        label: str | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Copy a blob to a local file, verifying its digest; return its size.

        The file appears at ``target`` only once verified.

        Raises:
            ArtifactNotFound: the store lacks the blob.
            DigestMismatch: the stored bytes no longer hash to ``digest``; names ``label``
                (the file's path in the version) when given.
        """
        if self._s3 is not None:
            return self._s3.get_file(  # type: ignore[no-any-return]
                self, digest, Path(target), label=label, progress=progress
            )
        source = self.blob_path(digest)

        def fill(writer: BinaryIO) -> tuple[str, int]:
            try:
                reader = self.fs.open(source, "rb")
            except FileNotFoundError:
                raise ArtifactNotFound(
                    f"the store {self.uri} lacks the blob of {label or digest}"
                ) from None
            with reader:
                return copy_and_hash(reader, writer, progress)

        return write_verified(target, digest, label or source, fill)

    def read_bytes(self, digest: str) -> bytes:
        """Return a blob's bytes, verified.

        Raises:
            DigestMismatch: when they no longer hash to ``digest``.
        """
        import hashlib

        data: bytes = self.fs.cat_file(self.blob_path(digest))
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise DigestMismatch(self.blob_uri(digest), digest, actual)
        return data

    # garbage collection -------------------------------------------------------------------

    def _walk(self, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        base = f"{self.root}/{prefix}"
        if not self.fs.exists(base):
            return
        yield from self.fs.find(base, detail=True).items()

    @staticmethod
    def age(info: dict[str, Any], now: float) -> float:
        """Return how old an object is, from its fsspec ``info`` (infinite when unknown)."""
        modified = info.get("mtime") or info.get("LastModified") or info.get("created")
        if modified is None:
            return float("inf")
        stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified)
        return now - stamp

    def collect_garbage(
        self, referenced: set[str], *, grace_seconds: float = 3600.0, dry_run: bool = False
    ) -> GarbageReport:
        """Remove temporary objects and blobs no ref or version names, older than the grace.

        The grace period protects uploads in flight whose refs are not recorded yet.
        """
        now = time.time()
        temporary: list[str] = []
        blobs: list[str] = []
        freed = 0
        for path, info in self._walk(_TMP):
            if self.age(info, now) >= grace_seconds:
                temporary.append(path)
                freed += int(info.get("size") or 0)
        for path, info in self._walk(_BLOBS):
            parts = path.rsplit("/", 2)
            digest = parts[-2] + parts[-1]
            if digest not in referenced and self.age(info, now) >= grace_seconds:
                blobs.append(digest)
                freed += int(info.get("size") or 0)
        if not dry_run:
            for path in temporary:
                self._remove_quietly(path)
            for digest in blobs:
                self._remove_quietly(self.blob_path(digest))
        if self._s3 is not None:  # multipart uploads left by killed processes
            from ensign.storage.s3 import abort_stale_uploads

            temporary += abort_stale_uploads(self.fs, self.root, grace_seconds, dry_run=dry_run)
        return GarbageReport(temporary, blobs, freed)


def _check_digest(digest: str) -> None:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise IntegrityError(f"not a sha256 digest: {digest!r}")
