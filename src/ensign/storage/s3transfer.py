"""Moving files to and from S3: verified multipart uploads and ranged downloads.

A blob goes to S3 straight under its final, content-addressed key: S3 has no rename, and
a temporary object followed by a server-side copy would move every byte twice.  The
digest (the key) is known before any byte moves -- from the stat cache or a hashing pass
-- so a blob the store already holds is never uploaded.  The upload hashes the bytes again
as it sends them and checks that the file did not change; only then does it complete,
with ``If-None-Match: *``, so that a key, once written, is never rewritten.  A failed or
refused upload is aborted and leaves nothing visible.

Memory: an upload reads each part into one of ``concurrency`` reusable buffers of
``part size`` bytes, so the file data it holds never exceeds ``concurrency * part size``
(128 MiB by default).  A download streams ``concurrency`` byte ranges straight to their
place in the file, a few MiB at a time, and hashes the completed prefix behind them.

Lineage digests are ensign's own sha256; an S3 ETag (for a multipart upload, a hash of
part hashes) is never used as one.

``s3fs`` and ``botocore`` (the ``s3`` extra) are used through the filesystem given; this
module imports neither at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ensign.errors import ConfigurationError, DigestMismatch, IntegrityError
from ensign.storage.hashing import Progress, sha256_file
from ensign.storage.s3parts import (
    WRITE_SIZE,
    BufferPool,
    HashFrontier,
    PartReader,
    read_into,
    read_up_to,
)

if TYPE_CHECKING:
    from ensign.storage.blobstore import BlobStore, StoredBlob

__all__ = [
    "CONCURRENCY",
    "MAX_PARTS",
    "MIN_PART_SIZE",
    "PART_SIZE",
    "RANGE_SIZE",
    "S3Transfer",
    "error_code",
]

#: Bytes per part of a multipart upload (``default_block_size`` in ``storage_options``
#: overrides it).
PART_SIZE = 16 * 2**20
#: Parts in flight per file (``max_concurrency`` in ``storage_options`` overrides it).
CONCURRENCY = 8
#: S3 refuses smaller parts (all but the last).
MIN_PART_SIZE = 5 * 2**20
#: S3 accepts at most this many parts per upload.
MAX_PARTS = 10_000

_T = TypeVar("_T")


def error_code(error: BaseException) -> str | None:
    """Return the S3 error code behind ``error`` (s3fs translates them to ``OSError``)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return None
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            return str(code) if code is not None else None
        seen = seen.__cause__ or seen.__context__
    return None


def _explain(error: OSError, bucket: str, key: str) -> Exception:
    """Turn an S3 failure into a clear ensign error, or return it unchanged."""
    code = error_code(error)
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if code == "NoSuchBucket":
        return ConfigurationError(f"the bucket {bucket!r} does not exist ({where})")
    if isinstance(error, PermissionError) or code in {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
    }:
        return ConfigurationError(
            f"the store refused access to {where} ({code or error}): check the credentials "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or storage_options)"
        )
    return error


class _Changed(Exception):
    """The source file changed while it was read (internal)."""


class _Mismatch(Exception):
    """The bytes sent do not hash to the expected digest, the file unchanged (internal)."""

    def __init__(self, actual: str) -> None:
        super().__init__(actual)
        self.actual = actual


@dataclass(frozen=True)
class _Sent:
    digest: str
    size: int
    published: bool


#: Bytes per ranged GET of a download (the parts of an upload are smaller: they are held
#: in memory, a range is streamed).
RANGE_SIZE = 64 * 2**20


class S3Transfer:
    """Moves files to and from one s3fs filesystem.

    Args:
        fs: An ``s3fs.S3FileSystem`` (its event loop and client are used).
        part_size: Bytes per part; default ``storage_options["default_block_size"]`` or
            :data:`PART_SIZE`.
        concurrency: Parts in flight; default ``storage_options["max_concurrency"]`` or
            :data:`CONCURRENCY`.

    Raises:
        ConfigurationError: a part size below 5 MiB or a concurrency below 1.
    """

    def __init__(
        self,
        fs: Any,
        *,
        part_size: int | None = None,
        concurrency: int | None = None,
        range_size: int | None = None,
    ) -> None:
        options = dict(getattr(fs, "storage_options", None) or {})
        self.fs = fs
        self.part_size = int(part_size or options.get("default_block_size") or PART_SIZE)
        self.concurrency = int(concurrency or options.get("max_concurrency") or CONCURRENCY)
        self.range_size = int(range_size or max(self.part_size, RANGE_SIZE))
        # Shared by every upload through this transfer (one store): the bound holds for all.
        self._buffers = BufferPool(self.part_size, self.concurrency)
        if self.part_size < MIN_PART_SIZE:
            raise ConfigurationError(
                f"S3 part size must be at least {MIN_PART_SIZE} bytes (5 MiB), got {self.part_size}"
            )
        if self.concurrency < 1:
            raise ConfigurationError(f"S3 concurrency must be at least 1, got {self.concurrency}")

    def __repr__(self) -> str:
        return f"S3Transfer(part_size={self.part_size}, concurrency={self.concurrency})"

    @property
    def max_buffered_bytes(self) -> int:
        """The most bytes of file data held in memory by one transfer."""
        return self.part_size * self.concurrency

    def part_size_for(self, size: int) -> int:
        """Return the part size for a file of ``size`` bytes (grown to stay within 10,000 parts)."""
        needed = math.ceil(size / MAX_PARTS)
        if needed <= self.part_size:
            return self.part_size
        return math.ceil(needed / 2**20) * 2**20

    def range_size_for(self, size: int) -> int:
        """Return the bytes per ranged GET for an object of ``size`` bytes."""
        return max(self.range_size, math.ceil(size / MAX_PARTS))

    def _run(self, make: Callable[[], Awaitable[_T]]) -> _T:
        from fsspec.asyn import sync

        async def call() -> _T:
            return await make()

        result: _T = sync(self.fs.loop, call)
        return result

    async def _call(self, method: str, **kwargs: Any) -> Any:
        if isinstance(kwargs.get("Body"), PartReader):
            return await self._call_with_stream(method, **kwargs)
        return await self.fs._call_s3(method, **kwargs)

    async def _call_with_stream(self, method: str, **kwargs: Any) -> Any:
        """Call the client directly, without s3fs's retries.

        s3fs would retry with a stream already read to its end; botocore's own retries
        rewind the stream before each attempt.
        """
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]
        from s3fs.errors import translate_boto_error

        await self.fs.set_session()
        client = await self.fs.get_s3(kwargs.get("Bucket"))
        call = getattr(client, method)
        try:
            return await call(**self.fs._get_s3_method_kwargs(call, **kwargs))
        except ClientError as error:
            raise translate_boto_error(error) from error

    # uploads ------------------------------------------------------------------------------

    def upload(
        self,
        source: Path,
        bucket: str,
        key: str,
        *,
        st: os.stat_result,
        expected: str | None = None,
        exclusive: bool = True,
        progress: Progress | None = None,
    ) -> tuple[str, int, bool]:
        """Upload a local file to ``bucket/key``; return ``(sha256, size, published)``.

        The object becomes visible only if the bytes sent hash to ``expected`` (when given)
        and ``source`` still has the size and modification time of ``st``.  With
        ``exclusive`` an existing key is left alone and ``published`` is ``False``.

        Raises:
            IntegrityError: the file changed while it was uploaded; nothing was published.
            DigestMismatch: the file did not change but its bytes do not hash to
                ``expected``; nothing was published.
            ConfigurationError: the bucket does not exist or the credentials are refused.
        """
        try:
            sent = self._run(
                lambda: self._upload(source, bucket, key, st, expected, exclusive, progress)
            )
        except _Changed:
            raise IntegrityError(
                f"{source} changed while it was uploaded; nothing was stored"
            ) from None
        except _Mismatch as mismatch:
            raise DigestMismatch(str(source), str(expected), mismatch.actual) from None
        except OSError as error:
            explained = _explain(error, bucket, key)
            if explained is error:
                raise
            raise explained from error
        self.fs.invalidate_cache(f"{bucket}/{key}")
        return sent.digest, sent.size, sent.published

    def put_bytes(self, data: bytes, bucket: str, key: str, *, exclusive: bool = True) -> bool:
        """Write ``data`` to ``bucket/key``; ``False`` when ``exclusive`` and it existed.

        Raises:
            ConfigurationError: the bucket does not exist or the credentials are refused.
        """
        try:
            published = self._run(lambda: self._put_object(bucket, key, data, exclusive))
        except OSError as error:
            explained = _explain(error, bucket, key)
            if explained is error:
                raise
            raise explained from error
        self.fs.invalidate_cache(f"{bucket}/{key}")
        return published

    async def _put_object(self, bucket: str, key: str, data: bytes, exclusive: bool) -> bool:
        match = {"IfNoneMatch": "*"} if exclusive else {}
        try:
            await self._call("put_object", Bucket=bucket, Key=key, Body=data, **match)
        except OSError as error:
            if exclusive and error_code(error) == "PreconditionFailed":
                return False
            raise
        return True

    async def _upload(
        self,
        source: Path,
        bucket: str,
        key: str,
        st: os.stat_result,
        expected: str | None,
        exclusive: bool,
        progress: Progress | None,
    ) -> _Sent:
        loop = asyncio.get_running_loop()
        part_size = self.part_size_for(st.st_size)
        digest = hashlib.sha256()

        def check_unchanged(actual: str, size: int) -> None:
            after = os.stat(source)
            if size != st.st_size or (after.st_size, after.st_mtime_ns) != (
                st.st_size,
                st.st_mtime_ns,
            ):
                raise _Changed
            if expected is not None and actual != expected:
                raise _Mismatch(actual)

        with open(source, "rb", buffering=0) as handle:
            fd = handle.fileno()
            if st.st_size <= part_size:
                data = await loop.run_in_executor(None, os.pread, fd, st.st_size + 1, 0)
                await loop.run_in_executor(None, digest.update, data)
                check_unchanged(digest.hexdigest(), len(data))
                published = await self._put_object(bucket, key, data, exclusive)
                if progress is not None:
                    progress(len(data))
                return _Sent(digest.hexdigest(), len(data), published)
            return await self._multipart(
                handle,
                st.st_size,
                part_size,
                bucket,
                key,
                digest,
                check_unchanged,
                exclusive,
                progress,
            )

    async def _multipart(
        self,
        handle: Any,
        size: int,
        part_size: int,
        bucket: str,
        key: str,
        digest: Any,
        check_unchanged: Callable[[str, int], None],
        exclusive: bool,
        progress: Progress | None,
    ) -> _Sent:
        loop = asyncio.get_running_loop()
        upload = await self._call("create_multipart_upload", Bucket=bucket, Key=key)
        upload_id = upload["UploadId"]
        # Parts are read into reused buffers: the data held is bounded by them.
        if part_size == self.part_size:
            pool = self._buffers
        else:  # a file so large that its parts had to grow
            pool = BufferPool(part_size, self.concurrency)
        etags: dict[int, str] = {}
        tasks: list[asyncio.Task[None]] = []
        failed: list[int] = []

        async def send(number: int, part: memoryview, buffer: bytearray) -> None:
            try:
                answer = await self._call(
                    "upload_part",
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=PartReader(part),
                )
                etags[number] = answer["ETag"]
                if progress is not None:
                    progress(len(part))
            except BaseException:
                failed.append(number)
                raise
            finally:
                part.release()
                pool.give(buffer)

        async with pool.using():
            try:
                read = 0
                for number, offset in enumerate(range(0, size, part_size), start=1):
                    buffer = await pool.take()
                    if failed:
                        pool.give(buffer)
                        break
                    part = memoryview(buffer)[: min(part_size, size - offset)]
                    count = await loop.run_in_executor(None, read_into, handle, part)
                    if count != len(part):
                        part.release()
                        pool.give(buffer)
                        raise _Changed
                    await loop.run_in_executor(None, digest.update, part)
                    read += count
                    tasks.append(asyncio.ensure_future(send(number, part, buffer)))
                await asyncio.gather(*tasks)
                # A file that grew shows up in its size; one that changed in place in the digest
                # (or in its modification time).
                tail = await loop.run_in_executor(None, os.pread, handle.fileno(), 1, size)
                if tail:
                    raise _Changed
                check_unchanged(digest.hexdigest(), read)
                parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
                match = {"IfNoneMatch": "*"} if exclusive else {}
                try:
                    await self._call(
                        "complete_multipart_upload",
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        MultipartUpload={"Parts": parts},
                        **match,
                    )
                except OSError as error:
                    if exclusive and error_code(error) == "PreconditionFailed":
                        await self._abort(bucket, key, upload_id)
                        return _Sent(digest.hexdigest(), read, False)
                    raise
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self._abort(bucket, key, upload_id)
                raise
            return _Sent(digest.hexdigest(), read, True)

    async def _abort(self, bucket: str, key: str, upload_id: str) -> None:
        # The original failure matters more than a failed abort; a bucket lifecycle rule
        # (AbortIncompleteMultipartUpload) removes what is left.
        with contextlib.suppress(Exception):
            await self._call("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)

    # downloads ----------------------------------------------------------------------------

    def download(
        self, bucket: str, key: str, target: Path, *, progress: Progress | None = None
    ) -> tuple[str, int]:
        """Copy ``bucket/key`` to the local file ``target``; return its sha256 and size.

        Byte ranges are fetched ``concurrency`` at a time and hashed in order.

        Raises:
            FileNotFoundError: the object does not exist.
            ConfigurationError: the bucket does not exist or the credentials are refused.
        """
        try:
            return self._run(lambda: self._download(bucket, key, target, progress))
        except FileNotFoundError as error:
            if error_code(error) == "NoSuchBucket":
                raise _explain(error, bucket, key) from error
            raise
        except OSError as error:
            explained = _explain(error, bucket, key)
            if explained is error:
                raise
            raise explained from error

    async def _download(
        self, bucket: str, key: str, target: Path, progress: Progress | None
    ) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        head = await self._call("head_object", Bucket=bucket, Key=key)
        size = int(head["ContentLength"])
        match = {"IfMatch": head["ETag"]} if head.get("ETag") else {}
        span = self.range_size_for(size)
        ranges = [(start, min(start + span, size)) for start in range(0, size, span)]
        slots = asyncio.Semaphore(self.concurrency)
        hashing = HashFrontier(ranges)
        failed: list[int] = []

        with open(target, "w+b", buffering=0) as handle:
            fd = handle.fileno()

            async def fetch(index: int, start: int, end: int) -> None:
                try:
                    answer = await self._call(
                        "get_object",
                        Bucket=bucket,
                        Key=key,
                        Range=f"bytes={start}-{end - 1}",
                        **match,
                    )
                    body = answer["Body"]
                    offset = start
                    try:
                        # Stream the range to its place in pieces: memory does not grow with
                        # the range, only with the number of ranges in flight.
                        while offset < end:
                            piece = await read_up_to(body, min(WRITE_SIZE, end - offset))
                            if not piece:
                                break
                            await loop.run_in_executor(None, os.pwrite, fd, piece, offset)
                            offset += len(piece)
                            if progress is not None:
                                progress(len(piece))
                    finally:
                        body.close()
                    if offset != end:
                        raise IntegrityError(
                            f"s3://{bucket}/{key} changed while it was downloaded "
                            f"(short range at byte {offset})"
                        )
                except BaseException:
                    failed.append(index)
                    raise
                finally:
                    slots.release()
                hashing.done(index)
                await hashing.advance(fd)

            tasks: list[asyncio.Task[None]] = []
            try:
                for index, (start, end) in enumerate(ranges):
                    await slots.acquire()
                    if failed:
                        slots.release()
                        break
                    tasks.append(asyncio.ensure_future(fetch(index, start, end)))
                await asyncio.gather(*tasks)
                await hashing.advance(fd)
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        return hashing.digest.hexdigest(), size

    # the BlobStore's S3 path --------------------------------------------------------------

    def has(self, path: str) -> bool:
        """Return whether the object ``bucket/key`` exists.

        Raises:
            ConfigurationError: the credentials are refused.
        """
        try:
            return bool(self.fs.exists(path))
        except OSError as error:
            bucket, key = self._bucket_key(path)
            explained = _explain(error, bucket, key)
            if explained is error:
                raise
            raise explained from error

    def _bucket_key(self, path: str) -> tuple[str, str]:
        bucket, key, _ = self.fs.split_path(path)
        return str(bucket), str(key)

    def put_file(
        self,
        store: BlobStore,
        source: Path,
        st: os.stat_result,
        *,
        digest: str | None,
        known: str | None,
        progress: Progress | None,
    ) -> StoredBlob:
        """Store a local file as a blob of ``store`` (see :meth:`BlobStore.put_file`).

        The digest comes first (``known`` from the stat cache, else a hashing pass), so a
        blob the store holds is never uploaded; the upload goes straight to the final key.
        """
        from ensign.storage.blobstore import StoredBlob

        # ``known`` is the stat cache's digest or else the caller's claim (``digest``); the
        # upload checks the bytes against it either way.
        actual = known if known is not None else sha256_file(source)
        if digest is not None and actual != digest:
            raise DigestMismatch(str(source), digest, actual)
        if store.has(actual):
            if progress is not None:
                progress(st.st_size)
            published = False
        else:
            bucket, key = self._bucket_key(store.blob_path(actual))
            _, _, published = self.upload(
                source, bucket, key, st=st, expected=actual, exclusive=True, progress=progress
            )
        if store.stat_cache is not None:
            store.stat_cache.remember(source, actual, st)
        return StoredBlob(actual, st.st_size, uploaded=published)

    def put_blob_bytes(self, store: BlobStore, data: bytes, digest: str) -> StoredBlob:
        """Store ``data`` (whose sha256 is ``digest``) as a blob of ``store``."""
        from ensign.storage.blobstore import StoredBlob

        bucket, key = self._bucket_key(store.blob_path(digest))
        published = self.put_bytes(data, bucket, key, exclusive=True)
        return StoredBlob(digest, len(data), uploaded=published)

    def get_file(
        self,
        store: BlobStore,
        digest: str,
        target: Path,
        *,
        label: str | None,
        progress: Progress | None,
    ) -> int:
        """Copy a blob of ``store`` to ``target``, verified (see :meth:`BlobStore.get_file`)."""
        from ensign.errors import ArtifactNotFound

        source = store.blob_path(digest)
        bucket, key = self._bucket_key(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            try:
                actual, size = self.download(bucket, key, partial, progress=progress)
            except FileNotFoundError:
                raise ArtifactNotFound(
                    f"the store {store.uri} lacks the blob of {label or digest}"
                ) from None
            if actual != digest:
                raise DigestMismatch(label or source, digest, actual)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return size
