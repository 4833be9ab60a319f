"""The push API against real ``ensign server`` processes: the openlayer SDK, unchanged, on a
folder store and on S3 (moto), every kind of bad bundle, limits and auth."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from openlayer import Openlayer
from openlayer.lib.data.commit import push as sdk_push

from bundle_helpers import accuracy_goal, make_shell_bundle, make_tar
from ensign.backend import open_backend
from ensign.server.evaluation import bundle_path
from ensign.server.state import SIGNING_SECRET_SETTING
from ensign.storage.signing import HmacSigner
from push_helpers import (
    commit,
    create_project,
    create_token,
    push_archive,
    upload,
    write_tiny_bundle,
)
from serving import LiveServer, run_ensign, start_server

# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One folder-store server for the module."""
    live = start_server(tmp_path_factory.mktemp("push-server"))
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def project_id(server: LiveServer) -> str:
    return create_project(server, "org/digits")


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shell_bundle(tmp_path_factory.mktemp("bundles") / "digits")


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with run scripts allowed, a 1 s script limit and a 64 kB bundle limit."""
    args = ["--allow-run-scripts", "--script-time-limit", "1", "--max-bundle-bytes", "65536"]
    live = start_server(tmp_path_factory.mktemp("strict-server"), args=args)
    try:
        yield live
    finally:
        live.stop()


def _store(server: LiveServer) -> Any:
    return open_backend(server.tracking_uri)


# --- the SDK, unchanged ----------------------------------------------------------------------


def test_sdk_push_on_a_folder_store(
    server: LiveServer, project_id: str, digits_bundle: Path
) -> None:
    client = Openlayer(api_key=server.token, base_url=f"{server.url}/v1")
    version = sdk_push(client, str(digits_bundle), project_id, wait_for_completion=True)
    assert version is not None
    assert version.status == "completed"
    assert (version.passing_goal_count, version.failing_goal_count) == (1, 0)
    assert version.total_goal_count == 1
    assert version.project_id == project_id
    assert version.commit.message == "New commit"
    assert version.commit.file_size
    assert version.commit.file_size > 0
    results = client.commits.test_results.list(version.id)
    assert [item.status for item in results.items] == ["passing"]
    item = results.items[0]
    assert item.goal is not None
    assert item.goal.name == "Accuracy above threshold"
    assert item.goal.thresholds[0].measurement == "accuracy"
    assert item.expected_values is not None
    assert item.expected_values[0].lower_threshold == 0.5
    assert item.measuredValue > 0.9

    backend = _store(server)
    try:
        run_id = version.ensign["runId"]
        made = backend.registry.get_version("org/digits", "artifact", version.ensign["version"])
        assert made.run == run_id
        assert made.evaluation is not None
        assert made.evaluation["passingGoalCount"] == 1
        assert made.evaluation["results"][0]["name"] == "Accuracy above threshold"
        assert "bundle/openlayer.json" in made.manifest
        assert made.content["push"] == version.id
        assert made.stage == "testing"
        metrics = backend.registry.get_metrics(run_id)
        assert metrics["goals_all_passing"][-1].value == 1.0
        assert metrics["goals_total"][-1].value == 1.0
        assert metrics["goal/Accuracy_above_threshold"][-1].value > 0.9
        assert backend.registry.get_run(run_id).status == "succeeded"
        store = backend.blob_store  # the archive is gone: its files are the version's blobs
        assert not store.fs.exists(bundle_path(store, version.commit.storage_uri))
    finally:
        backend.close()


def test_sdk_push_on_an_s3_store(
    tmp_path: Path, s3_env: str, s3_bucket: str, digits_bundle: Path
) -> None:
    live = start_server(tmp_path / "s3-server", artifacts_uri=f"s3://{s3_bucket}/store")
    try:
        key = create_project(live, "digits")
        client = Openlayer(api_key=live.token, base_url=f"{live.url}/v1")
        version = sdk_push(client, str(digits_bundle), key, wait_for_completion=True)
        assert version is not None
        assert version.status == "completed"
        assert version.passing_goal_count == 1
        assert version.commit.storage_uri.startswith(f"s3://{s3_bucket}/store/pushes/")
        target = requests.post(
            f"{live.url}/v1/storage/presigned-url",
            params={"objectName": "bundle.tar"},
            headers=live.headers(),
            timeout=30,
        ).json()
        assert target["url"].startswith(s3_env)
        assert "policy" in target["fields"]
        backend = open_backend(live.tracking_uri)
        try:
            made = backend.registry.get_version("digits", "artifact", "v1")
            assert made.store_uri == f"s3://{s3_bucket}/store"
            assert made.evaluation is not None
            assert made.evaluation["totalGoalCount"] == 1
        finally:
            backend.close()
    finally:
        live.stop()


def test_a_failing_goal(server: LiveServer, project_id: str, tmp_path: Path) -> None:
    bundle = write_tiny_bundle(tmp_path / "b", goals=[accuracy_goal(0.9, name="Strict")])
    version = push_archive(server, project_id, make_tar(bundle, tmp_path / "b.tar"))
    assert version["status"] == "completed"
    assert (version["passingGoalCount"], version["failingGoalCount"]) == (0, 1)
    client = Openlayer(api_key=server.token, base_url=f"{server.url}/v1")
    items = client.commits.test_results.list(version["id"]).items
    assert [item.status for item in items] == ["failing"]
    assert items[0].measuredValue == pytest.approx(0.75)
    backend = _store(server)
    try:
        metrics = backend.registry.get_metrics(version["ensign"]["runId"])
        assert metrics["goals_all_passing"][-1].value == 0.0
        assert metrics["goals_failing"][-1].value == 1.0
    finally:
        backend.close()


# --- bad bundles -----------------------------------------------------------------------------


def _evil_tar(bundle: Path, target: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(target, "w") as tar:
        tar.add(bundle, arcname="bundle")
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return target


def _member(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    ("member", "named"),
    [
        (_member("/tmp/ensign-evil-absolute.txt", tarfile.REGTYPE), "ensign-evil-absolute.txt"),
        (_member("bundle/../../ensign-evil-dotdot.txt", tarfile.REGTYPE), "ensign-evil-dotdot"),
        (_member("bundle/evil-link", tarfile.SYMTYPE, "/etc/passwd"), "evil-link"),
        (_member("bundle/evil-device", tarfile.CHRTYPE), "evil-device"),
    ],
    ids=["absolute", "dotdot", "symlink", "device"],
)
def test_unsafe_tar_entries_fail_the_version(
    server: LiveServer, project_id: str, tmp_path: Path, member: tarfile.TarInfo, named: str
) -> None:
    bundle = write_tiny_bundle(tmp_path / "b")
    archive = _evil_tar(bundle, tmp_path / "evil.tar", member, b"evil")
    version = push_archive(server, project_id, archive)
    assert version["status"] == "failed"
    assert named in version["statusMessage"]
    assert version["ensign"]["version"] is None
    assert not Path("/tmp/ensign-evil-absolute.txt").exists()


def _broken(folder: Path, how: str) -> Path:
    bundle = write_tiny_bundle(folder)
    config = json.loads((bundle / "openlayer.json").read_text())
    if how == "config":
        config["taskType"] = "astrology"
    elif how == "config-json":
        (bundle / "openlayer.json").write_text("{not json")
        return bundle
    elif how == "goals":
        goal = {**accuracy_goal(0.5), "thresholds": "nope"}
        (bundle / "tests.json").write_text(json.dumps([goal]))
    elif how == "measurement":
        goal = accuracy_goal(0.5)
        goal["thresholds"][0]["measurement"] = "vibes"
        (bundle / "tests.json").write_text(json.dumps([goal]))
    elif how == "dataset":
        config["datasets"][0]["path"] = "missing.csv"
    elif how == "column":
        config["datasets"][0]["labelColumnName"] = "no_such_column"
    (bundle / "openlayer.json").write_text(json.dumps(config))
    return bundle


@pytest.mark.parametrize(
    ("how", "named"),
    [
        ("config", "taskType"),
        ("config-json", "openlayer.json"),
        ("goals", "thresholds"),
        ("measurement", "vibes"),
        ("dataset", "missing.csv"),
        ("column", "no_such_column"),
    ],
)
def test_malformed_bundles_fail_naming_the_culprit(
    server: LiveServer, project_id: str, tmp_path: Path, how: str, named: str
) -> None:
    bundle = _broken(tmp_path / "bundle", how)
    version = push_archive(server, project_id, make_tar(bundle, tmp_path / "b.tar"))
    assert version["status"] == "failed", version
    assert named in version["statusMessage"]
    if how == "measurement":
        assert "accuracy" in version["statusMessage"]  # the known ones are listed
    assert version["ensign"]["version"] is None


def test_a_hanging_batch_command_is_killed_at_the_limit(
    strict_server: LiveServer, tmp_path: Path
) -> None:
    key = create_project(strict_server, "hang")
    model = {"modelType": "full", "batchCommand": "sleep 60"}
    bundle = write_tiny_bundle(tmp_path / "b", model=model)
    started = time.monotonic()
    version = push_archive(strict_server, key, make_tar(bundle, tmp_path / "b.tar"))
    assert time.monotonic() - started < 30
    assert version["status"] == "failed"
    assert "sleep 60" in version["statusMessage"]
    assert "killed" in version["statusMessage"]


def test_a_bundle_over_the_size_limit_is_refused(strict_server: LiveServer, tmp_path: Path) -> None:
    archive = tmp_path / "big.tar"
    folder = write_tiny_bundle(tmp_path / "big")
    (folder / "padding.bin").write_bytes(b"x" * 200_000)
    make_tar(folder, archive)
    target = requests.post(
        f"{strict_server.url}/v1/storage/presigned-url",
        headers=strict_server.headers(),
        timeout=30,
    ).json()
    with open(archive, "rb") as handle:
        answer = requests.post(target["url"], files={"file": ("bundle.tar", handle)}, timeout=30)
    assert answer.status_code == 413
    assert answer.json()["error"]["type"] == "PayloadTooLarge"


# --- requests the server refuses -------------------------------------------------------------


def test_oversized_and_unknown_json_is_refused(server: LiveServer, project_id: str) -> None:
    url = f"{server.url}/v1/projects/{project_id}/versions"
    huge = {"commit": {"message": "x" * (17 * 1024 * 1024)}, "storageUri": "s"}
    assert requests.post(url, json=huge, headers=server.headers(), timeout=60).status_code == 413
    unknown = {"commit": {"message": "m"}, "storageUri": "s", "colour": "blue"}
    answer = requests.post(url, json=unknown, headers=server.headers(), timeout=30)
    assert answer.status_code == 400
    assert "colour" in answer.json()["error"]["message"]
    nested = {"commit": {"message": "m", "mood": 1}, "storageUri": "s"}
    assert requests.post(url, json=nested, headers=server.headers(), timeout=30).status_code == 400


def test_storage_uris_the_server_did_not_issue_are_refused(
    server: LiveServer, project_id: str, tmp_path: Path
) -> None:
    for uri in ("/etc/passwd", "file:///etc/passwd", "s3://bucket/x.tar"):
        answer = commit(server, project_id, uri)
        assert answer.status_code == 400, answer.text
        assert "was not issued" in answer.json()["error"]["message"]
    target = requests.post(
        f"{server.url}/v1/storage/presigned-url", headers=server.headers(), timeout=30
    ).json()
    answer = commit(server, project_id, target["storageUri"])  # issued but never uploaded
    assert answer.status_code == 404
    bad = requests.post(
        f"{server.url}/v1/storage/presigned-url",
        params={"objectName": "../escape.tar"},
        headers=server.headers(),
        timeout=30,
    )
    assert bad.status_code == 400


def test_unknown_versions_are_404(server: LiveServer) -> None:
    for path in ("/v1/versions/0123456789abcdef0123456789abcdef", "/v1/versions/nope/results"):
        answer = requests.get(f"{server.url}{path}", headers=server.headers(), timeout=30)
        assert answer.status_code == 404
        assert answer.json()["error"]["type"] == "VersionNotFound"


def test_auth(server: LiveServer, project_id: str, tmp_path: Path) -> None:
    presign = f"{server.url}/v1/storage/presigned-url"
    assert requests.post(presign, timeout=30).status_code == 401
    other = create_token(server, create_project(server, "other"), "write")
    reader = create_token(server, "org/digits", "read")
    assert requests.post(presign, headers=server.headers(reader), timeout=30).status_code == 403

    bundle = write_tiny_bundle(tmp_path / "b")
    storage_uri = upload(server, make_tar(bundle, tmp_path / "b.tar"), token=other)
    assert commit(server, project_id, storage_uri, token=other).status_code == 403
    assert commit(server, "org/digits", storage_uri, token=reader).status_code == 403
    created = commit(server, "org/digits", storage_uri)
    assert created.status_code == 201
    version_id = created.json()["id"]
    for token, status in ((reader, 200), (other, 403)):
        answer = requests.get(
            f"{server.url}/v1/versions/{version_id}", headers=server.headers(token), timeout=30
        )
        assert answer.status_code == status
    assert requests.get(f"{server.url}/v1/versions/{version_id}", timeout=30).status_code == 401


def test_tampered_and_expired_upload_urls_are_403(server: LiveServer, tmp_path: Path) -> None:
    target = requests.post(
        f"{server.url}/v1/storage/presigned-url", headers=server.headers(), timeout=30
    ).json()
    archive = make_tar(write_tiny_bundle(tmp_path / "b"), tmp_path / "b.tar")
    tampered = target["url"].replace("bundle.tar", "other.tar")
    backend = _store(server)
    try:
        secret = backend.registry.get_setting(SIGNING_SECRET_SETTING)
    finally:
        backend.close()
    assert secret is not None
    key = target["url"].split("/v1/storage/uploads/", 1)[1].split("?", 1)[0]
    expired = HmacSigner(bytes.fromhex(secret)).sign_url(
        f"{server.url}/v1/storage/uploads", "POST", key, expires_in=60, now=time.time() - 3600
    )
    for url in (tampered, target["url"][:-3] + "000", expired):
        with open(archive, "rb") as handle:
            answer = requests.post(url, files={"file": ("bundle.tar", handle)}, timeout=30)
        assert answer.status_code == 403, (url, answer.text)
    with open(archive, "rb") as handle:
        good = requests.post(target["url"], files={"file": ("bundle.tar", handle)}, timeout=30)
    assert good.status_code == 204
    shutil.rmtree(tmp_path / "b")


def test_gc_removes_uncommitted_bundles_and_keeps_waiting_ones(tmp_path: Path) -> None:
    idle = start_server(tmp_path / "idle", args=["--workers", "0"])  # commits stay queued
    try:
        project = create_project(idle, "org/gc")
        archive = make_tar(write_tiny_bundle(tmp_path / "b"), tmp_path / "b.tar")
        abandoned = upload(idle, archive)  # uploaded, never committed
        waiting = upload(idle, archive)
        assert commit(idle, project, waiting).status_code == 201
        backend = _store(idle)
        try:
            store = backend.blob_store
            kept_path = bundle_path(store, waiting)
            gone_path = bundle_path(store, abandoned)
            assert store.fs.exists(gone_path)
            done = run_ensign("gc", "--grace-period", "0", "--tracking-uri", idle.tracking_uri)
            assert done.returncode == 0, done.stderr
            assert f"removed temporary object {abandoned}" in done.stdout
            assert waiting not in done.stdout
            assert not store.fs.exists(gone_path)
            assert store.fs.exists(kept_path)
        finally:
            backend.close()
    finally:
        idle.stop()
