"""The BlobStore contract and S3's own behaviours, against moto's S3 server over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import inspect
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from ensign import tracking
from ensign.client import ProjectClient
from ensign.errors import (
    ArtifactNotFound,
    ConfigurationError,
    DigestMismatch,
    IntegrityError,
)
from ensign.storage.blobstore import BlobStore
from ensign.storage.s3 import MIN_PART_SIZE, S3Transfer, error_code, split_s3_uri
from ensign.storage.statcache import StatCache

PART = MIN_PART_SIZE  # the smallest part S3 accepts keeps multipart tests small


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load_contract() -> ModuleType:
    path = Path(__file__).with_name("test_blobstore.py")
    spec = importlib.util.spec_from_file_location("ensign_blobstore_contract", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONTRACT = _load_contract()
# Contract tests that cannot run on S3, and why.
NOT_ON_S3 = {
    # Backdates objects with os.utime / memory internals; S3's LastModified cannot be set.
    # test_collect_garbage_on_s3 below covers garbage collection with grace 0 and 1 day.
    "test_collect_garbage": "cannot backdate S3 objects",
}
_FIXTURES = {"store", "store_uri", "tmp_path"}


def _contract_tests() -> list[str]:
    names = []
    for name, function in vars(CONTRACT).items():
        if not name.startswith("test_") or not callable(function) or name in NOT_ON_S3:
            continue
        parameters = set(inspect.signature(function).parameters)
        if parameters & {"store", "store_uri"} and parameters <= _FIXTURES:
            names.append(name)
    return sorted(names)


CONTRACT_TESTS = _contract_tests()


def test_the_contract_suite_is_found() -> None:
    # Guards against an empty parametrization (a renamed file would run nothing here).
    assert len(CONTRACT_TESTS) >= 15, CONTRACT_TESTS
    assert set(NOT_ON_S3) <= set(vars(CONTRACT)), "NOT_ON_S3 names a test that is gone"


@pytest.fixture
def s3_uri(s3_bucket: str) -> str:
    return f"s3://{s3_bucket}/store"


@pytest.fixture
def stat_cache(tmp_path: Path) -> Iterator[StatCache]:
    cache = StatCache(tmp_path / "cache" / "statcache.sqlite")
    try:
        yield cache
    finally:
        cache.close()


@pytest.fixture
def s3_store(s3_uri: str, stat_cache: StatCache) -> BlobStore:
    # Small parts, so the contract's multi-megabyte files go up as real multipart uploads.
    return BlobStore(s3_uri, stat_cache=stat_cache, storage_options={"default_block_size": PART})


@pytest.mark.parametrize("name", CONTRACT_TESTS)
def test_blobstore_contract_on_s3(
    name: str, s3_store: BlobStore, s3_uri: str, tmp_path: Path
) -> None:
    function: Callable[..., None] = getattr(CONTRACT, name)
    available: dict[str, Any] = {"store": s3_store, "store_uri": s3_uri, "tmp_path": tmp_path}
    wanted = inspect.signature(function).parameters
    function(**{k: v for k, v in available.items() if k in wanted})


# --- what the server saw --------------------------------------------------------------

_REQUEST = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP')


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Callable[[], list[tuple[str, str]]]:
    """The (method, path) of every request the moto server answered since the last call."""
    caplog.set_level(logging.INFO, logger="werkzeug")

    def seen() -> list[tuple[str, str]]:
        requests = []
        for record in caplog.records:
            match = _REQUEST.search(record.getMessage())
            if record.name == "werkzeug" and match and "/moto-api/" not in match.group(2):
                requests.append((match.group(1), match.group(2)))
        caplog.clear()
        return requests

    return seen


def writes(requests: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [r for r in requests if r[0] in {"PUT", "POST", "DELETE"}]


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- multipart, lineage digests, dedup ------------------------------------------------


def test_large_files_go_up_in_parts_and_the_digest_is_sha256_not_the_etag(
    s3_store: BlobStore, s3_env: str, tmp_path: Path, server_log: Callable[[], list[Any]]
) -> None:
    data = os.urandom(2 * PART + 1000)
    server_log()
    stored = s3_store.put_file(write(tmp_path / "big.bin", data))
    requests = server_log()
    parts = [r for r in requests if r[0] == "PUT" and "partNumber=" in r[1]]
    assert len(parts) == 3
    assert not any(r[0] == "PUT" and "/tmp/" in r[1] for r in requests)  # straight to its key
    assert not any("x-amz-copy" in r[1] or r[0] == "DELETE" for r in requests)
    bucket, key = split_s3_uri(s3_store.blob_uri(stored.digest))
    client = s3_client(s3_env)
    try:
        etag = client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    finally:
        client.close()
    assert etag.endswith("-3")  # a multipart ETag: a hash of part hashes
    assert stored.digest == sha(data) != etag
    assert s3_store.read_bytes(stored.digest) == data


def test_a_known_digest_moves_no_byte(
    s3_store: BlobStore, tmp_path: Path, server_log: Callable[[], list[Any]]
) -> None:
    data = os.urandom(PART + 10)
    s3_store.put_file(write(tmp_path / "first.bin", data))
    server_log()
    # Another file with the same bytes: hashed locally, found in the store, never sent.
    again = s3_store.put_file(write(tmp_path / "second.bin", data))
    assert (again.digest, again.uploaded) == (sha(data), False)
    assert writes(server_log()) == []
    assert s3_store.put_bytes(b"tiny").uploaded
    server_log()
    assert not s3_store.put_bytes(b"tiny").uploaded
    assert writes(server_log()) == []


def test_unchanged_reupload_asks_the_store_one_question(
    s3_store: BlobStore, tmp_path: Path, server_log: Callable[[], list[Any]]
) -> None:
    source = write(tmp_path / "model.bin", os.urandom(PART + 10))
    digest = s3_store.put_file(source).digest
    server_log()
    # The stat cache knows the digest: no hashing, one HEAD, no byte sent.
    assert s3_store.put_file(source).uploaded is False
    assert server_log() == [("HEAD", f"/{s3_store.blob_path(digest)}")]


def test_keys_are_written_once(s3_store: BlobStore, s3_bucket: str, tmp_path: Path) -> None:
    transfer = S3Transfer(s3_store.fs, part_size=PART)
    small = write(tmp_path / "small.bin", b"first version")
    big = write(tmp_path / "big.bin", os.urandom(2 * PART + 1))
    for source in (small, big):
        key = f"once/{source.name}"
        digest, size, published = transfer.upload(source, s3_bucket, key, st=os.stat(source))
        assert (digest, size, published) == (sha(source.read_bytes()), source.stat().st_size, True)
        other = write(tmp_path / f"other-{source.name}", b"another version" * 10)
        _, _, published = transfer.upload(other, s3_bucket, key, st=os.stat(other))
        assert published is False  # If-None-Match: * kept the first bytes
        assert s3_store.fs.cat_file(f"{s3_bucket}/{key}") == source.read_bytes()
        # Without exclusive the key is replaced (the artifact helper's behaviour).
        transfer.upload(other, s3_bucket, key, st=os.stat(other), exclusive=False)
        s3_store.fs.invalidate_cache()
        assert s3_store.fs.cat_file(f"{s3_bucket}/{key}") == other.read_bytes()
    assert transfer.put_bytes(b"a", s3_bucket, "once/bytes") is True
    assert transfer.put_bytes(b"b", s3_bucket, "once/bytes") is False
    assert s3_store.fs.cat_file(f"{s3_bucket}/once/bytes") == b"a"


class CountingTransfer(S3Transfer):
    """Watches how many parts are in flight at once (the calls still go to the server)."""

    def __init__(self, fs: Any, **kwargs: Any) -> None:
        super().__init__(fs, **kwargs)
        self.in_flight = 0
        self.most_in_flight = 0
        self.calls: list[str] = []

    async def _call(self, method: str, **kwargs: Any) -> Any:
        self.calls.append(method)
        if method not in {"upload_part", "get_object"}:
            return await super()._call(method, **kwargs)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)  # let the other parts start, as a slow network would
            return await super()._call(method, **kwargs)
        finally:
            self.in_flight -= 1


def test_parts_in_flight_are_bounded_by_the_concurrency(
    s3_store: BlobStore, s3_bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(6 * PART + 7)
    source = write(tmp_path / "six.bin", data)
    transfer = CountingTransfer(s3_store.fs, part_size=PART, concurrency=2)
    assert transfer.max_buffered_bytes == 2 * PART
    progress: list[int] = []
    transfer.upload(
        source, s3_bucket, "bounded/six.bin", st=os.stat(source), progress=progress.append
    )
    assert transfer.calls.count("upload_part") == 7
    assert transfer.most_in_flight == 2
    assert sorted(progress) == sorted([PART] * 6 + [7])

    down = CountingTransfer(s3_store.fs, part_size=PART, concurrency=3, range_size=PART)
    fetched: list[int] = []
    digest, size = down.download(
        s3_bucket, "bounded/six.bin", tmp_path / "back.bin", progress=fetched.append
    )
    assert (digest, size) == (sha(data), len(data))
    assert (tmp_path / "back.bin").read_bytes() == data
    assert down.calls.count("get_object") == 7
    assert down.most_in_flight == 3
    assert sum(fetched) == len(data)
    assert max(fetched) <= 4 * 2**20  # ranges are streamed to disk in pieces


def test_concurrent_uploads_of_one_store_share_the_memory_bound(
    s3_store: BlobStore, s3_bucket: str, tmp_path: Path
) -> None:
    transfer = CountingTransfer(s3_store.fs, part_size=PART, concurrency=2)
    sources = [write(tmp_path / f"f{i}.bin", os.urandom(4 * PART + i)) for i in range(3)]
    results: list[tuple[str, int, bool]] = []

    def upload(source: Path) -> None:
        results.append(
            transfer.upload(source, s3_bucket, f"shared/{source.name}", st=os.stat(source))
        )

    threads = [threading.Thread(target=upload, args=(source,)) for source in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == sorted((sha(s.read_bytes()), s.stat().st_size, True) for s in sources)
    assert transfer.calls.count("upload_part") == 4 + 5 + 5
    assert transfer.most_in_flight == 2  # two slots for the three uploads together
    assert transfer._buffers._made == 0  # idle again: no buffer kept


def test_part_size_grows_to_stay_within_ten_thousand_parts(s3_store: BlobStore) -> None:
    transfer = S3Transfer(s3_store.fs, part_size=PART, concurrency=4)
    assert transfer.part_size_for(10 * PART) == PART
    huge = 200 * 2**30  # 200 GiB at 5 MiB parts would be 40,960 parts
    size = transfer.part_size_for(huge)
    assert size % 2**20 == 0
    assert huge / size <= 10_000


def test_transfer_settings_come_from_storage_options(s3_uri: str) -> None:
    store = BlobStore(
        s3_uri, storage_options={"default_block_size": 8 * 2**20, "max_concurrency": 3}
    )
    transfer = S3Transfer(store.fs)
    assert (transfer.part_size, transfer.concurrency) == (8 * 2**20, 3)
    assert transfer.max_buffered_bytes == 24 * 2**20
    with pytest.raises(
        ConfigurationError, match=r"part size must be at least 5242880 bytes \(5 MiB\)"
    ):
        S3Transfer(store.fs, part_size=2**20)
    with pytest.raises(ConfigurationError, match="concurrency must be at least 1"):
        S3Transfer(store.fs, concurrency=-1)


# --- nothing is published on failure --------------------------------------------------


def pending_uploads(endpoint: str, bucket: str) -> list[Any]:
    client = s3_client(endpoint)
    try:
        return list(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))
    finally:
        client.close()


def test_a_file_changed_in_place_during_a_multipart_upload_is_refused(
    s3_store: BlobStore, s3_env: str, s3_bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(3 * PART)
    source = write(tmp_path / "weights.bin", data)
    before = os.stat(source)

    def rewrite_in_place(count: int) -> None:
        # Same size; the mtime moves, as any real write does.
        with open(source, "r+b") as handle:
            handle.write(b"\0" * 16)

    with pytest.raises(IntegrityError, match=r"weights\.bin changed while it was uploaded"):
        s3_store.put_file(source, progress=rewrite_in_place)
    assert os.stat(source).st_size == before.st_size
    assert s3_store.fs.find(s3_store.root) == []
    assert pending_uploads(s3_env, s3_bucket) == []  # the multipart upload was aborted


def test_a_claimed_digest_that_does_not_match_aborts_the_multipart_upload(
    s3_store: BlobStore, s3_env: str, s3_bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(2 * PART + 3)
    source = write(tmp_path / "claimed.bin", data)
    claimed = sha(b"something else")
    with pytest.raises(DigestMismatch, match=r"claimed\.bin") as info:
        s3_store.put_file(source, digest=claimed)
    assert (info.value.expected, info.value.actual) == (claimed, sha(data))
    assert not s3_store.has(claimed)
    assert s3_store.fs.find(s3_store.root) == []
    assert pending_uploads(s3_env, s3_bucket) == []


def test_a_claim_that_contradicts_the_stat_cache_moves_no_byte(
    s3_uri: str, stat_cache: StatCache, tmp_path: Path, server_log: Callable[[], list[Any]]
) -> None:
    source = write(tmp_path / "model.bin", os.urandom(PART + 1))
    BlobStore(s3_uri, stat_cache=stat_cache).put_file(source)  # the cache learns its digest
    other = BlobStore(s3_uri + "-other", stat_cache=stat_cache)
    claimed = sha(b"not these bytes")
    server_log()
    with pytest.raises(DigestMismatch, match=r"model\.bin") as info:
        other.put_file(source, digest=claimed)
    assert (info.value.expected, info.value.actual) == (claimed, sha(source.read_bytes()))
    assert writes(server_log()) == []
    assert other.fs.find(other.root) == []


# --- bad stores -----------------------------------------------------------------------


def test_a_bucket_that_does_not_exist(s3_env: str, tmp_path: Path) -> None:
    store = BlobStore("s3://no-such-bucket-for-ensign/prefix")
    source = write(tmp_path / "a.bin", b"bytes")
    assert not store.has(sha(b"bytes"))
    with pytest.raises(
        ConfigurationError, match="the bucket 'no-such-bucket-for-ensign' does not exist"
    ):
        store.put_file(source)
    with pytest.raises(ConfigurationError, match="does not exist"):
        store.put_bytes(b"x" * (PART + 1))
    big = write(tmp_path / "big.bin", os.urandom(2 * PART))
    multipart = BlobStore(
        "s3://no-such-bucket-for-ensign/prefix", storage_options={"default_block_size": PART}
    )
    with pytest.raises(ConfigurationError, match="does not exist"):
        multipart.put_file(big)
    with pytest.raises(ArtifactNotFound, match=r"lacks the blob of model\.bin"):
        store.get_file(sha(b"bytes"), tmp_path / "out" / "model.bin", label="model.bin")
    client = s3_client(s3_env)
    try:
        names = [b["Name"] for b in client.list_buckets()["Buckets"]]
    finally:
        client.close()
    assert "no-such-bucket-for-ensign" not in names  # never created behind the user's back


def test_wrong_credentials_are_refused_with_a_clear_error(
    s3_bucket: str, s3_enforced_credentials: tuple[str, str], tmp_path: Path
) -> None:
    key_id, secret = s3_enforced_credentials
    uri = f"s3://{s3_bucket}/store"
    source = write(tmp_path / "a.bin", os.urandom(PART + 1))
    good = BlobStore(uri, storage_options={"key": key_id, "secret": secret})
    digest = good.put_file(source).digest
    for options in (
        {"key": key_id, "secret": "not-the-secret"},  # SignatureDoesNotMatch
        {"key": "AKIAUNKNOWNKEY000000", "secret": secret},  # InvalidAccessKeyId
        {},  # the environment's testing/testing, unknown to the server now
    ):
        bad = BlobStore(uri, storage_options={**options, "skip_instance_cache": True})
        with pytest.raises(
            ConfigurationError, match=r"refused access to s3://.*check the credentials"
        ):
            bad.put_bytes(b"other bytes")
        with pytest.raises(ConfigurationError, match="refused access"):
            bad.has(digest)
        with pytest.raises(ConfigurationError, match="refused access"):
            bad.get_file(digest, tmp_path / "out.bin")
    assert good.read_bytes(digest) == source.read_bytes()


def test_error_code_reads_through_s3fs_translations(s3_env: str, s3_bucket: str) -> None:
    store = BlobStore(f"s3://{s3_bucket}/store")
    with pytest.raises(FileNotFoundError) as info:
        store.fs.call_s3("get_object", Bucket=s3_bucket, Key="absent")
    assert error_code(info.value) == "NoSuchKey"
    assert error_code(ValueError("plain")) is None


# --- garbage collection ---------------------------------------------------------------


def test_collect_garbage_on_s3(s3_store: BlobStore) -> None:
    kept = s3_store.put_bytes(b"referenced").digest
    dropped = s3_store.put_bytes(b"unreferenced").digest
    leftover = f"{s3_store.root}/tmp/abandoned.part"
    s3_store.fs.pipe_file(leftover, b"half an upload")
    young = s3_store.collect_garbage({kept}, grace_seconds=86400)
    assert (young.blobs, young.temporary) == ([], [])
    report = s3_store.collect_garbage({kept}, grace_seconds=0)
    assert report.blobs == [dropped]
    assert [p.rsplit("/", 1)[-1] for p in report.temporary] == ["abandoned.part"]
    assert report.freed_bytes == len(b"unreferenced") + len(b"half an upload")
    assert s3_store.has(kept)
    assert not s3_store.has(dropped)
    assert not s3_store.fs.exists(leftover)


def test_collect_garbage_aborts_multipart_uploads_left_behind(
    s3_store: BlobStore, s3_env: str, s3_bucket: str
) -> None:
    client = s3_client(s3_env)
    try:
        mine = client.create_multipart_upload(Bucket=s3_bucket, Key="store/blobs/sha256/ab/cd")
        client.upload_part(
            Bucket=s3_bucket,
            Key="store/blobs/sha256/ab/cd",
            UploadId=mine["UploadId"],
            PartNumber=1,
            Body=b"a killed upload",
        )
        other = client.create_multipart_upload(Bucket=s3_bucket, Key="elsewhere/file")
    finally:
        client.close()
    # (moto reports every upload as begun in 2010, so the grace cannot be seen to spare one.)
    dry = s3_store.collect_garbage(set(), grace_seconds=0, dry_run=True)
    expected = f"s3://{s3_bucket}/store/blobs/sha256/ab/cd?uploadId={mine['UploadId']}"
    assert dry.temporary == [expected]
    assert len(pending_uploads(s3_env, s3_bucket)) == 2
    assert s3_store.collect_garbage(set(), grace_seconds=0).temporary == [expected]
    left = pending_uploads(s3_env, s3_bucket)
    assert [u["UploadId"] for u in left] == [other["UploadId"]]  # outside the store: kept
    missing = BlobStore("s3://no-such-bucket-for-ensign/x")
    assert missing.collect_garbage(set(), grace_seconds=0).temporary == []


# --- tracking, promotion and pull end to end ------------------------------------------


def test_tracking_promotion_and_pull_with_an_s3_artifacts_uri(
    s3_bucket: str, tmp_path: Path, server_log: Callable[[], list[Any]]
) -> None:
    tracking_dir = tmp_path / "tracking"
    artifacts_uri = f"s3://{s3_bucket}/team/ensign"
    weights = write(tmp_path / "model.bin", os.urandom(3 * 2**20))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write(data_dir / "train.csv", b"x,y\n1,2\n")
    write(data_dir / "test.csv", b"x,y\n3,4\n")

    with tracking.init(
        project="digits", tracking_uri=tracking_dir, artifacts_uri=artifacts_uri
    ) as run:
        tracking.log_params(lr=0.01)
        tracking.log_dir_ref(data_dir, name="data", is_input=True)
        tracking.log_model_ref(weights, name="model")
        tracking.log_metrics(step=1, val_acc=0.95, val_loss=0.1)
        version = tracking.promote_to_model_version(when="val_acc >= 0.9 and val_loss < 0.3")
    assert version is not None
    assert version.name == "v1"

    client = s3_client(os.environ["AWS_ENDPOINT_URL"])
    try:
        listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="team/ensign/")
    finally:
        client.close()
    keys = {o["Key"] for o in listed.get("Contents", [])}
    digests = {sha(weights.read_bytes()), sha(b"x,y\n1,2\n"), sha(b"x,y\n3,4\n")}
    assert keys == {f"team/ensign/blobs/sha256/{d[:2]}/{d[2:]}" for d in digests}

    # A reader who names no artifacts URI pulls from the store the version records.
    with ProjectClient(project="digits", tracking_uri=tracking_dir) as pc:
        pulled = pc.pull_model_version("v1", tmp_path / "pulled")
        refs = {r.name: r for r in pc.get_model_version_lineage("v1")}
    files = sorted(p.relative_to(pulled).as_posix() for p in pulled.rglob("*") if p.is_file())
    assert files == [".ensign-version.json", "model/model.bin"]
    assert (pulled / "model" / "model.bin").read_bytes() == weights.read_bytes()
    assert refs["model"].digest == sha(weights.read_bytes())
    assert refs["model"].uri is not None

    # Logging the same files again moves no byte.
    server_log()
    with tracking.init(project="digits", tracking_uri=tracking_dir) as again:
        tracking.log_model_ref(weights, name="model")
        tracking.log_dir_ref(data_dir, name="data", is_input=True)
    assert writes(server_log()) == []
    assert again.uuid != run.uuid
