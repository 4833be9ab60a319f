"""The BlobStore contract on a local folder (path and file:// URL) and on memory://."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import fsspec
import pytest

from ensign.errors import (
    ArtifactNotFound,
    ConfigurationError,
    DigestMismatch,
    IntegrityError,
    StoreNotAvailable,
)
from ensign.storage.blobstore import BlobStore
from ensign.storage.hashing import CHUNK_SIZE
from ensign.storage.statcache import StatCache


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["path", "file-url", "memory"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "path":
        yield str(tmp_path / "store")
    elif request.param == "file-url":
        yield (tmp_path / "store").as_uri()
    else:
        # fsspec's memory filesystem is process-wide: a root of our own, removed afterwards.
        root = f"/ensign-test-{uuid.uuid4().hex}"
        try:
            yield f"memory://{root}"
        finally:
            memory = fsspec.filesystem("memory")
            if memory.exists(root):
                memory.rm(root, recursive=True)


@pytest.fixture
def stat_cache(tmp_path: Path) -> Iterator[StatCache]:
    cache = StatCache(tmp_path / "cache" / "statcache.sqlite")
    try:
        yield cache
    finally:
        cache.close()


@pytest.fixture
def store(store_uri: str, stat_cache: StatCache) -> BlobStore:
    return BlobStore(store_uri, stat_cache=stat_cache)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def files_under(store: BlobStore, prefix: str) -> list[str]:
    base = f"{store.root}/{prefix}"
    if not store.fs.exists(base):
        return []
    return sorted(store.fs.find(base))


def make_old(store: BlobStore, path: str, seconds: float) -> None:
    """Backdate an object in the store by ``seconds``."""
    then = time.time() - seconds
    if store.fs.protocol == "memory" or "memory" in store.fs.protocol:
        store.fs.store[path].created = datetime.fromtimestamp(then, tz=timezone.utc)
    else:
        os.utime(path, (then, then))


# --- writing --------------------------------------------------------------------------


def test_put_file_returns_digest_and_size(store: BlobStore, tmp_path: Path) -> None:
    data = b"hello ensign\n" * 1000
    source = write(tmp_path / "data.bin", data)
    stored = store.put_file(source)
    assert (stored.digest, stored.size, stored.uploaded) == (sha(data), len(data), True)
    assert store.has(stored.digest)
    assert store.blob_path(stored.digest).endswith(f"/{stored.digest[:2]}/{stored.digest[2:]}")
    assert store.blob_uri(stored.digest).startswith(store.uri)
    assert store.read_bytes(stored.digest) == data
    assert files_under(store, "tmp") == []


def test_an_empty_file_is_a_blob_too(store: BlobStore, tmp_path: Path) -> None:
    stored = store.put_file(write(tmp_path / "empty", b""))
    assert (stored.digest, stored.size) == (sha(b""), 0)
    target = tmp_path / "out" / "empty"
    assert store.get_file(stored.digest, target) == 0
    assert target.read_bytes() == b""


def test_same_bytes_are_stored_once(store: BlobStore, tmp_path: Path) -> None:
    first = store.put_file(write(tmp_path / "a.bin", b"same bytes"))
    second = store.put_file(write(tmp_path / "b.bin", b"same bytes"))
    assert second.digest == first.digest
    assert (first.uploaded, second.uploaded) == (True, False)
    assert len(files_under(store, "blobs")) == 1
    again = store.put_bytes(b"same bytes")
    assert (again.digest, again.uploaded) == (first.digest, False)
    other = store.put_bytes(b"other bytes")
    assert (other.digest, other.uploaded) == (sha(b"other bytes"), True)
    assert len(files_under(store, "blobs")) == 2


def test_has_and_missing(store: BlobStore) -> None:
    held = store.put_bytes(b"held").digest
    absent = sha(b"absent")
    assert store.has(held)
    assert not store.has(absent)
    assert store.missing([held, absent, absent]) == {absent}
    assert store.missing([]) == set()


def test_a_malformed_digest_is_refused(store: BlobStore) -> None:
    with pytest.raises(IntegrityError, match="not a sha256 digest: 'abc'"):
        store.has("abc")
    with pytest.raises(IntegrityError, match="not a sha256 digest"):
        store.blob_path("G" * 64)


def test_put_file_of_a_missing_path(store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFound, match=r"no such file: .*nothing-here"):
        store.put_file(tmp_path / "nothing-here")


def test_unchanged_file_is_not_hashed_again(store: BlobStore, tmp_path: Path) -> None:
    source = write(tmp_path / "model.bin", b"A" * 4096)
    first = store.put_file(source)
    assert first.digest == sha(b"A" * 4096)
    before = os.stat(source)
    # Rewrite the bytes in place (same inode, same size), then restore the mtime: to the
    # stat cache the file is unchanged, so an answer with the old digest proves no re-hash.
    with open(source, "r+b") as handle:
        handle.write(b"B" * 4096)
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(source)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert store.digest_of(source) == first.digest
    again = store.put_file(source)
    assert (again.digest, again.uploaded) == (first.digest, False)
    # Once the mtime moves the file is hashed (and uploaded) again.
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert store.digest_of(source) == sha(b"B" * 4096)
    changed = store.put_file(source)
    assert (changed.digest, changed.uploaded) == (sha(b"B" * 4096), True)


def test_stat_cache_survives_reopening(tmp_path: Path, store_uri: str) -> None:
    source = write(tmp_path / "f.bin", b"x" * 100)
    path = tmp_path / "cache.sqlite"
    cache = StatCache(path)
    digest = BlobStore(store_uri, stat_cache=cache).digest_of(source)
    cache.close()
    reopened = StatCache(path)
    try:
        assert reopened.lookup(source) == digest
        # A different file at the same path (new inode) is not trusted.
        source.unlink()
        write(source, b"y" * 100)
        assert reopened.lookup(source) is None
    finally:
        reopened.close()


def test_a_given_digest_that_does_not_match_publishes_nothing(
    store: BlobStore, tmp_path: Path
) -> None:
    data = b"actual bytes"
    source = write(tmp_path / "weights.bin", data)
    claimed = sha(b"claimed bytes")
    with pytest.raises(DigestMismatch) as info:
        store.put_file(source, digest=claimed)
    assert "weights.bin" in str(info.value)
    assert (info.value.expected, info.value.actual) == (claimed, sha(data))
    assert not store.has(sha(data))
    assert not store.has(claimed)
    assert files_under(store, "blobs") == []
    assert files_under(store, "tmp") == []
    # The failed attempt taught the stat cache nothing.
    assert store.stat_cache is not None
    assert store.stat_cache.lookup(source) is None


def test_a_file_that_changes_while_uploading_publishes_nothing(
    store: BlobStore, tmp_path: Path
) -> None:
    source = write(tmp_path / "growing.bin", os.urandom(2 * CHUNK_SIZE + 1234))
    calls: list[int] = []

    def append_on_first_chunk(count: int) -> None:
        calls.append(count)
        if len(calls) == 1:
            with open(source, "ab") as handle:
                handle.write(b"more bytes")

    with pytest.raises(IntegrityError, match=r"growing\.bin changed while it was uploaded"):
        store.put_file(source, progress=append_on_first_chunk)
    assert len(calls) >= 3  # it really was several chunks in
    assert files_under(store, "blobs") == []
    assert files_under(store, "tmp") == []
    assert store.stat_cache is not None
    assert store.stat_cache.lookup(source) is None


def test_progress_reports_every_byte(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(CHUNK_SIZE + 10)
    source = write(tmp_path / "big.bin", data)
    seen: list[int] = []
    store.put_file(source, progress=seen.append)
    assert sum(seen) == len(data)
    skipped: list[int] = []
    assert store.put_file(source, progress=skipped.append).uploaded is False
    assert sum(skipped) == len(data)  # a skipped upload still completes the bar
    pulled: list[int] = []
    store.get_file(sha(data), tmp_path / "back.bin", progress=pulled.append)
    assert sum(pulled) == len(data)


# --- reading --------------------------------------------------------------------------


def test_get_file_copies_and_verifies(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(50_000)
    digest = store.put_file(write(tmp_path / "src.bin", data)).digest
    target = tmp_path / "out" / "deep" / "copy.bin"
    assert store.get_file(digest, target) == len(data)
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["copy.bin"]


def test_a_corrupted_blob_is_refused_and_names_the_file(store: BlobStore, tmp_path: Path) -> None:
    data = b"the real model"
    digest = store.put_bytes(data).digest
    store.fs.pipe_file(store.blob_path(digest), b"bit rot")
    target_dir = tmp_path / "pulled"
    target = target_dir / "weights.bin"
    with pytest.raises(DigestMismatch, match=r"digest mismatch for model/weights\.bin") as info:
        store.get_file(digest, target, label="model/weights.bin")
    assert info.value.path == "model/weights.bin"
    assert (info.value.expected, info.value.actual) == (digest, sha(b"bit rot"))
    assert not target.exists()
    assert list(target_dir.iterdir()) == []  # no partial file left behind
    with pytest.raises(DigestMismatch, match=digest[2:]):
        store.read_bytes(digest)


def test_a_corrupted_blob_does_not_replace_an_existing_file(
    store: BlobStore, tmp_path: Path
) -> None:
    digest = store.put_bytes(b"good").digest
    store.fs.pipe_file(store.blob_path(digest), b"bad!")
    target = write(tmp_path / "pulled" / "file.txt", b"previous content")
    with pytest.raises(DigestMismatch):
        store.get_file(digest, target)
    assert target.read_bytes() == b"previous content"
    assert list(target.parent.iterdir()) == [target]


def test_a_missing_blob_is_not_found(store: BlobStore, tmp_path: Path) -> None:
    digest = sha(b"never stored")
    target = tmp_path / "pulled" / "x.bin"
    with pytest.raises(ArtifactNotFound, match=r"lacks the blob of data/x\.bin"):
        store.get_file(digest, target, label="data/x.bin")
    with pytest.raises(ArtifactNotFound, match=digest):
        store.get_file(digest, target)
    assert list(target.parent.iterdir()) == []


# --- garbage collection ---------------------------------------------------------------


def test_collect_garbage(store: BlobStore, tmp_path: Path) -> None:
    kept = store.put_bytes(b"referenced").digest
    old = store.put_bytes(b"unreferenced and old").digest
    young = store.put_bytes(b"unreferenced but young").digest
    leftover = f"{store.root}/tmp/{uuid.uuid4().hex}.part"
    fresh_leftover = f"{store.root}/tmp/{uuid.uuid4().hex}.part"
    store.fs.pipe_file(leftover, b"half an upload")
    store.fs.pipe_file(fresh_leftover, b"an upload in flight")
    for path in (store.blob_path(kept), store.blob_path(old), leftover):
        make_old(store, path, 7200)

    dry = store.collect_garbage({kept}, grace_seconds=3600, dry_run=True)
    assert dry.blobs == [old]
    assert [p.rsplit("/", 1)[-1] for p in dry.temporary] == [leftover.rsplit("/", 1)[-1]]
    assert dry.freed_bytes == len(b"unreferenced and old") + len(b"half an upload")
    assert all(store.has(d) for d in (kept, old, young))
    assert store.fs.exists(leftover)

    report = store.collect_garbage({kept}, grace_seconds=3600)
    assert (report.blobs, report.freed_bytes) == (dry.blobs, dry.freed_bytes)
    assert store.has(kept)
    assert store.has(young)
    assert not store.has(old)
    assert not store.fs.exists(leftover)
    assert store.fs.exists(fresh_leftover)

    # With no grace, everything unreferenced goes; the referenced blob stays.
    store.collect_garbage({kept}, grace_seconds=0)
    assert store.has(kept)
    assert not store.has(young)
    assert files_under(store, "tmp") == []
    assert store.read_bytes(kept) == b"referenced"


def test_collect_garbage_on_an_empty_store(store: BlobStore) -> None:
    report = store.collect_garbage(set(), grace_seconds=0)
    assert (report.temporary, report.blobs, report.freed_bytes) == ([], [], 0)


# --- protocols ------------------------------------------------------------------------


def _missing_protocol() -> tuple[str, str]:
    if importlib.util.find_spec("gcsfs") is None:
        return "gs://bucket/prefix", "gcs"
    if importlib.util.find_spec("adlfs") is None:
        return "abfs://container/prefix", "azure"
    pytest.fail("both gcsfs and adlfs are installed: no missing protocol to test with")


def test_a_protocol_whose_package_is_missing_names_the_extra() -> None:
    uri, extra = _missing_protocol()
    with pytest.raises(StoreNotAvailable) as info:
        BlobStore(uri)
    message = str(info.value)
    assert f"pip install 'ensign[{extra}]'" in message
    assert info.value.extra == extra
    assert info.value.protocol == uri.split("://", 1)[0]
    assert isinstance(info.value, ConfigurationError)


def test_an_unknown_protocol_is_not_available() -> None:
    with pytest.raises(StoreNotAvailable, match="'nosuchproto' is not available") as info:
        BlobStore("nosuchproto://somewhere")
    assert info.value.extra is None
    assert "install an fsspec package" in str(info.value)


def test_a_trailing_slash_does_not_change_the_store(store_uri: str) -> None:
    plain = BlobStore(store_uri)
    slashed = BlobStore(store_uri + "/")
    digest = plain.put_bytes(b"shared").digest
    assert slashed.uri == plain.uri
    assert slashed.has(digest)
