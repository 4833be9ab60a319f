"""Pieces of S3 transfers: part streams, range reads and in-order hashing of ranges."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
from collections.abc import AsyncIterator
from typing import Any

from ensign.errors import IntegrityError
from ensign.storage.hashing import CHUNK_SIZE

__all__ = ["WRITE_SIZE", "BufferPool", "HashFrontier", "PartReader", "read_into", "read_up_to"]

#: Bytes written at a time while a range streams in; memory per range in flight.
WRITE_SIZE = 4 * 2**20


async def read_up_to(body: Any, count: int) -> bytes:
    """Read ``count`` bytes from a streaming body, fewer only at its end."""
    pieces: list[bytes] = []
    got = 0
    while got < count:
        piece: bytes = await body.read(count - got)
        if not piece:
            break
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)


def read_into(handle: Any, view: memoryview) -> int:
    """Fill ``view`` from the file's current position; fewer bytes only at its end."""
    filled = 0
    while filled < len(view):
        count = handle.readinto(view[filled:])
        if not count:
            break
        filled += count
    return filled


class PartReader(io.RawIOBase):
    """A part's bytes as a seekable stream, sent in small pieces without another copy.

    Handed a ``bytes`` body, the HTTP stack keeps what the socket has not taken yet in its
    own buffer, and a ``BytesIO`` is copied whole; either holds each part in flight twice.
    """

    def __init__(self, data: memoryview) -> None:
        super().__init__()
        self._view = data
        self._position = 0

    def __len__(self) -> int:
        return len(self._view)

    def readable(self) -> bool:
        """Return ``True``: the part can be read."""
        return True

    def seekable(self) -> bool:
        """Return ``True``: retries rewind the part."""
        return True

    def tell(self) -> int:
        """Return the read position."""
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the read position; return it."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        self._position = max(0, base[whence] + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        """Copy the next bytes into ``buffer``; return how many."""
        count = max(0, min(len(buffer), len(self._view) - self._position))
        buffer[:count] = self._view[self._position : self._position + count]
        self._position += count
        return count

    def read(self, size: int | None = -1) -> bytes:
        """Return the next ``size`` bytes (all that is left when negative)."""
        end = len(self._view) if size is None or size < 0 else self._position + size
        data = self._view[self._position : end].tobytes()
        self._position += len(data)
        return data


class HashFrontier:
    """Hashes a file being written range by range, in order, as far as it is complete.

    Ranges finish in any order; the hash reads back (from the page cache) the longest
    complete prefix, on a worker thread, while later ranges still stream in.
    """

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = ranges
        self.digest = hashlib.sha256()
        self.complete: set[int] = set()
        self.next_range = 0
        self.hashed = 0
        self.lock = asyncio.Lock()

    def done(self, index: int) -> None:
        """Record that range ``index`` is written."""
        self.complete.add(index)

    def frontier(self) -> int:
        """Return the end of the longest prefix of written ranges."""
        while self.next_range in self.complete:
            self.next_range += 1
        return self.ranges[self.next_range - 1][1] if self.next_range else 0

    async def advance(self, fd: int) -> None:
        """Hash, reading back from ``fd``, as far as the ranges are written."""
        if self.lock.locked():
            return  # the running pass picks up what is complete when it loops
        async with self.lock:
            loop = asyncio.get_running_loop()
            while (upto := self.frontier()) > self.hashed:
                await loop.run_in_executor(None, self._hash, fd, self.hashed, upto)
                self.hashed = upto

    def _hash(self, fd: int, start: int, end: int) -> None:
        offset = start
        while offset < end:
            data = os.pread(fd, min(CHUNK_SIZE, end - offset), offset)
            if not data:
                raise IntegrityError("a downloaded file shrank while it was verified")
            self.digest.update(data)
            offset += len(data)


class BufferPool:
    """At most ``count`` buffers of ``size`` bytes, shared by the uploads of one store.

    Buffers are made on demand, reused while uploads run, and dropped when the last one
    ends, so an idle store holds none.  Use it only from one event loop.
    """

    def __init__(self, size: int, count: int) -> None:
        self.size = size
        self.count = count
        self._queue: asyncio.Queue[bytearray] | None = None
        self._made = 0
        self._users = 0

    def _free(self) -> asyncio.Queue[bytearray]:
        if self._queue is None:
            self._queue = asyncio.Queue()
        return self._queue

    async def take(self) -> bytearray:
        """Return a free buffer, waiting for one when all ``count`` are in use."""
        free = self._free()
        if free.empty() and self._made < self.count:
            self._made += 1
            return bytearray(self.size)
        return await free.get()

    def give(self, buffer: bytearray) -> None:
        """Hand a buffer back."""
        self._free().put_nowait(buffer)

    @contextlib.asynccontextmanager
    async def using(self) -> AsyncIterator[BufferPool]:
        """Mark an upload that takes buffers; the last one to leave frees them."""
        self._users += 1
        try:
            yield self
        finally:
            self._users -= 1
            if self._users == 0:
                free = self._free()
                while not free.empty():
                    free.get_nowait()
                    self._made -= 1
