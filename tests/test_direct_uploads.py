"""Direct uploads and downloads through signed URLs: the server's own for a folder store,
presigned S3 URLs for an S3 store; clients hold no store credentials."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests

from ensign import tracking
from ensign.client import ProjectClient
from ensign.registry.rest import RemoteBlobStore, RestSession
from ensign.storage.blobstore import BlobStore
from ensign.storage.statcache import StatCache
from serving import LiveServer, start_server


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def missing(server: LiveServer, digests: list[str], **extra: Any) -> dict[str, Any]:
    answer = requests.post(
        f"{server.url}/api/v1/blobs/missing",
        json={"digests": digests, **extra},
        headers=server.headers(),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def folder_store(server: LiveServer) -> BlobStore:
    return BlobStore((Path(server.tracking_uri) / "artifacts").as_uri())


def remote_store(server: LiveServer, tmp_path: Path) -> RemoteBlobStore:
    session = RestSession(server.url, server.token)
    return RemoteBlobStore.of_server(session, stat_cache=StatCache(tmp_path / "stat.sqlite"))


def vm_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


# --- a folder store: the server's own signed endpoints -------------------------------------


def test_folder_store_uploads_once_through_signed_urls(
    live_server: LiveServer, tmp_path: Path
) -> None:
    source = tmp_path / "weights.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks
    source.write_bytes(data)
    store = remote_store(live_server, tmp_path)
    try:
        first = store.put_file(source)
        assert (first.digest, first.size, first.uploaded) == (sha(data), len(data), True)
        assert folder_store(live_server).read_bytes(first.digest) == data
        # Unchanged: neither hashed again (stat cache) nor uploaded again.
        assert store.put_file(source).uploaded is False
        assert store.put_bytes(data).uploaded is False
        small = store.put_bytes(b"tiny")
        assert small.uploaded is True
        assert store.has(small.digest)
        assert store.missing([first.digest, sha(b"never")]) == {sha(b"never")}
        store.get_file(first.digest, tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == data
    finally:
        store.session.close()
    target = missing(live_server, [sha(b"new bytes")])["uploads"][sha(b"new bytes")]
    assert target["method"] == "PUT"
    assert target["url"].startswith(f"{live_server.url}/api/v1/blobs/{sha(b'new bytes')}?")
    assert "X-Ensign-Signature=" in target["url"]
    put = requests.put(target["url"], data=b"new bytes", timeout=30)  # no bearer token needed
    assert put.status_code == 201
    assert folder_store(live_server).has(sha(b"new bytes"))


def test_a_tampered_or_expired_url_is_403(live_server: LiveServer) -> None:
    digest = sha(b"payload")
    url = missing(live_server, [digest])["uploads"][digest]["url"]
    signature = parse_qs(urlsplit(url).query)["X-Ensign-Signature"][0]
    tampered = with_query(
        url, **{"X-Ensign-Signature": ("0" if signature[0] != "0" else "1") + signature[1:]}
    )
    later = with_query(url, **{"X-Ensign-Expires": str(int(time.time()) + 10**6)})
    other_digest = url.replace(digest, sha(b"other"))
    for bad in (tampered, later, other_digest, url.split("?")[0]):
        answer = requests.put(bad, data=b"payload", timeout=30)
        assert answer.status_code == 403, (bad, answer.text)
        assert answer.json()["error"]["type"] == "Forbidden"
    short = missing(live_server, [digest], expires_in=1)["uploads"][digest]["url"]
    time.sleep(1.2)
    expired = requests.put(short, data=b"payload", timeout=30)
    assert expired.status_code == 403
    assert "expired" in expired.json()["error"]["message"]
    assert not folder_store(live_server).has(digest)
    # Downloads are signed the same way.
    ok = requests.put(url, data=b"payload", timeout=30)
    assert ok.status_code == 201
    download = requests.post(
        f"{live_server.url}/api/v1/blobs/downloads",
        json={"digests": [digest]},
        headers=live_server.headers(),
        timeout=30,
    ).json()["downloads"][digest]["url"]
    assert requests.get(download, timeout=30).content == b"payload"
    get_tampered = with_query(download, **{"X-Ensign-Expires": "9999999999"})
    assert requests.get(get_tampered, timeout=30).status_code == 403
    as_upload = requests.put(download, data=b"payload", timeout=30)  # a GET URL cannot PUT
    assert as_upload.status_code == 403


def test_bytes_that_do_not_match_the_digest_are_422_and_not_published(
    live_server: LiveServer,
) -> None:
    digest = sha(b"the real bytes")
    url = missing(live_server, [digest])["uploads"][digest]["url"]
    answer = requests.put(url, data=b"something else", timeout=30)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["type"] == "DigestMismatch"
    assert digest in error["message"]
    store = folder_store(live_server)
    assert not store.has(digest)
    leftovers = (
        list((Path(store.root) / "tmp").glob("*")) if (Path(store.root) / "tmp").exists() else []
    )
    assert leftovers == []


def test_the_server_streams_uploads_and_never_holds_a_whole_blob(
    live_server: LiveServer, tmp_path: Path
) -> None:
    size = 96 * 1024 * 1024
    source = tmp_path / "big.bin"
    with open(source, "wb") as out:
        block = os.urandom(1024 * 1024)
        for index in range(size // len(block)):
            out.write(block[:-8] + index.to_bytes(8, "big"))
    before = vm_peak_kib(live_server.process.pid)
    store = remote_store(live_server, tmp_path)
    try:
        stored = store.put_file(source)
    finally:
        store.session.close()
    assert stored.uploaded
    assert stored.size == size
    grown = vm_peak_kib(live_server.process.pid) - before
    # The body streams through ~1 MiB buffers: the server's peak memory barely moves.
    assert grown < 32 * 1024, f"the server's peak memory grew by {grown} KiB"
    assert folder_store(live_server).has(stored.digest)


# --- an S3 store: presigned S3 URLs, no credentials in the client --------------------------


@pytest.fixture
def s3_server(
    s3_env: str, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> LiveServer:
    server = start_server(tmp_path / "srv", artifacts_uri=f"s3://{s3_bucket}/prefix")
    # From here on the client process has no AWS credentials or endpoint at all.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENSIGN_TOKEN", server.token)
    return server


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def test_s3_uploads_go_straight_to_s3_with_the_checksum_signed(
    s3_server: LiveServer, s3_env: str, s3_bucket: str, tmp_path: Path
) -> None:
    try:
        digest = sha(b"s3 bytes")
        target = missing(s3_server, [digest])["uploads"][digest]
        assert target["url"].startswith(f"{s3_env}/{s3_bucket}/prefix/blobs/sha256/")
        query = parse_qs(urlsplit(target["url"]).query)
        assert "x-amz-checksum-sha256" in query["X-Amz-SignedHeaders"][0]
        checksum = base64.b64encode(hashlib.sha256(b"s3 bytes").digest()).decode()
        assert target["headers"] == {"x-amz-checksum-sha256": checksum}
        model = tmp_path / "model.bin"
        model.write_bytes(b"s3 model " * 5000)
        with tracking.init(project="digits", tracking_uri=s3_server.url):
            tracking.log_metric("acc", 0.95)
            tracking.log_model_ref(model, name="model")
            version = tracking.promote_to_model_version(when="acc > 0.9")
        assert version is not None
        assert version.store_uri == f"s3://{s3_bucket}/prefix"
        key = f"prefix/blobs/sha256/{sha(model.read_bytes())[:2]}/{sha(model.read_bytes())[2:]}"
        stored = s3_client(s3_env).get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        assert stored == model.read_bytes()
        with ProjectClient(project="digits", tracking_uri=s3_server.url) as client:
            pulled = client.pull_model_version(version.name, tmp_path / "pulled")
            assert (pulled / "model" / "model.bin").read_bytes() == model.read_bytes()
            # Unchanged: not uploaded a second time.
            assert client.backend.store.put_file(model).uploaded is False
    finally:
        s3_server.stop()
