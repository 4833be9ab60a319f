"""copy_and_hash: the bytes written are the bytes read, and the digest is theirs."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import fsspec
import pytest

from ensign.storage import transfer
from ensign.storage.transfer import copy_and_hash

CHUNK = transfer._CHUNK


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 12345, 6 * CHUNK])
def test_a_local_copy_is_exact_at_every_size(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    seen: list[int] = []
    with open(source, "rb") as reader, open(tmp_path / "out.bin", "wb") as writer:
        digest, copied = copy_and_hash(reader, writer, seen.append)
    assert (tmp_path / "out.bin").read_bytes() == data
    assert (digest, copied) == (hashlib.sha256(data).hexdigest(), size)
    assert sum(seen) == size


def test_a_target_that_keeps_what_it_is_given_gets_its_own_bytes(tmp_path: Path) -> None:
    # An fsspec memory file keeps references to what it is written; the ring of buffers is
    # reused, so it must be handed copies.
    data = os.urandom(5 * CHUNK + 7)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    fs = fsspec.filesystem("memory")
    kept: list[bytes] = []

    class Keeper(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, chunk: bytes) -> int:  # type: ignore[override]
            kept.append(chunk)
            return len(chunk)

    with open(source, "rb") as reader, fs.open("/t/out.bin", "wb") as writer:
        digest, _ = copy_and_hash(reader, writer)
    with open(source, "rb") as reader:
        copy_and_hash(reader, Keeper())
    assert fs.cat_file("/t/out.bin") == data
    assert b"".join(kept) == data
    assert digest == hashlib.sha256(data).hexdigest()


def test_a_source_without_readinto_is_copied_too() -> None:
    data = os.urandom(2 * CHUNK + 3)

    class ReadOnly:
        def __init__(self) -> None:
            self._inner = io.BytesIO(data)

        def read(self, size: int = -1) -> bytes:
            return self._inner.read(size)

    out = io.BytesIO()
    digest, size = copy_and_hash(ReadOnly(), out)  # type: ignore[arg-type]
    assert (out.getvalue(), digest, size) == (data, hashlib.sha256(data).hexdigest(), len(data))


def test_a_failing_write_stops_the_copy_and_leaves_no_thread(tmp_path: Path) -> None:
    import threading

    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(4 * CHUNK))
    before = threading.active_count()
    with open(source, "rb") as reader, open(tmp_path / "out.bin", "wb") as writer:
        writer.close()
        with pytest.raises(ValueError, match="closed file"):
            copy_and_hash(reader, writer)
    assert threading.active_count() == before


def test_a_copy_across_file_systems_is_exact(tmp_path: Path) -> None:
    # tmpfs to the test's folder: the kernel refuses copy_file_range across file systems
    # (EXDEV) and the copy goes through Python buffers instead; the result is the same.
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else tmp_path / "src"
    folder.mkdir(exist_ok=True)
    try:
        data = os.urandom(3 * CHUNK + 99)
        source = folder / "in.bin"
        source.write_bytes(data)
        with open(source, "rb") as reader, open(tmp_path / "out.bin", "wb") as writer:
            digest, size = copy_and_hash(reader, writer)
        assert (tmp_path / "out.bin").read_bytes() == data
        assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_copies_leave_no_descriptor_or_thread_behind(tmp_path: Path) -> None:
    import threading

    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(3 * CHUNK))
    fds = Path("/proc/self/fd")
    before = (len(list(fds.iterdir())) if fds.is_dir() else 0, threading.active_count())
    for n in range(5):
        with open(source, "rb") as reader, open(tmp_path / f"out{n}.bin", "wb") as writer:
            copy_and_hash(reader, writer)
    after = (len(list(fds.iterdir())) if fds.is_dir() else 0, threading.active_count())
    assert after == before


def test_a_wrapped_target_sees_every_byte_through_its_write(tmp_path: Path) -> None:
    # A wrapper around a real file (a progress bar, a throttle) exposes fileno() too; the
    # kernel copy must not bypass its write().
    data = os.urandom(3 * CHUNK + 5)
    source = tmp_path / "in.bin"
    source.write_bytes(data)

    class Counting:
        def __init__(self, handle: io.BufferedWriter) -> None:
            self.handle = handle
            self.seen = 0

        def write(self, chunk: bytes) -> int:
            self.seen += len(chunk)
            return self.handle.write(chunk)

        def __getattr__(self, name: str) -> object:
            return getattr(self.handle, name)

    with open(source, "rb") as reader, open(tmp_path / "out.bin", "wb") as handle:
        counting = Counting(handle)
        digest, size = copy_and_hash(reader, counting)
    assert counting.seen == size == len(data)
    assert (tmp_path / "out.bin").read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest()
