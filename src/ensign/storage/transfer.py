"""Moving bytes: copy a stream while hashing it, on two cores when there are two."""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import BinaryIO, Protocol

from ensign.storage.hashing import CHUNK_SIZE, Progress

__all__ = ["Writable", "copy_and_hash"]

# Chunks waiting for the hashing thread; bounds memory at about this many chunks.
_PENDING_CHUNKS = 4


class Writable(Protocol):
    """Anything with a binary ``write`` (a local file or an fsspec file)."""

    def write(self, data: bytes, /) -> int | None:
        """Write ``data``."""


def _hash_worker(
    chunks: queue.Queue[bytes | None], digest: hashlib._Hash, failure: list[BaseException]
) -> None:
    try:
        while True:
            chunk = chunks.get()
            if chunk is None:
                return
            digest.update(chunk)
    except BaseException as exc:  # handed to the copying thread, which re-raises it
        failure.append(exc)


def copy_and_hash(
    source: BinaryIO, target: Writable, progress: Progress | None = None
) -> tuple[str, int]:
    """Copy ``source`` to ``target`` and return the sha256 and size of what was copied.

    Hashing runs on its own thread (hashlib releases the GIL), so copying and hashing
    overlap and a copy costs little more than a plain copy.
    """
    digest = hashlib.sha256()
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=_PENDING_CHUNKS)
    failure: list[BaseException] = []
    hasher = threading.Thread(target=_hash_worker, args=(chunks, digest, failure), daemon=True)
    hasher.start()
    size = 0
    try:
        while True:
            chunk = source.read(CHUNK_SIZE)
            if not chunk:
                break
            chunks.put(chunk)
            target.write(chunk)
            size += len(chunk)
            if progress is not None:
                progress(len(chunk))
    finally:
        chunks.put(None)
        hasher.join()
    if failure:
        raise failure[0]
    return digest.hexdigest(), size
