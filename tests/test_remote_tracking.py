"""Tracking, promotion, clients and pull against a live ``ensign server`` (``ENSIGN_TOKEN``)."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from ensign import tracking
from ensign.backend import open_backend
from ensign.client import ProjectClient, RunClient
from ensign.errors import ConfigurationError, DigestMismatch, RunNotFound, ServerUnavailable
from ensign.registry.base import RunBatch
from ensign.registry.rest import RemoteBlobStore, RestRegistry
from ensign.storage.blobstore import BlobStore
from ensign.tracking.writer import BackgroundWriter
from serving import LiveServer, run_ensign, start_server

MODEL = b"weights " * 1000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> LiveServer:
    monkeypatch.setenv("ENSIGN_TOKEN", live_server.token)
    return live_server


def server_store(server: LiveServer) -> BlobStore:
    return BlobStore((Path(server.tracking_uri) / "artifacts").as_uri())


def test_a_remote_backend_has_a_rest_registry_and_the_servers_store(server: LiveServer) -> None:
    backend = open_backend(server.url)
    try:
        assert isinstance(backend.registry, RestRegistry)
        assert isinstance(backend.store, RemoteBlobStore)
        assert backend.store.uri == server_store(server).uri
        assert backend.store_for(None) is backend.store
        with pytest.raises(ConfigurationError, match="is a server"):
            _ = backend.blob_store
    finally:
        backend.close()
    with pytest.raises(ConfigurationError, match="takes no artifacts URI"):
        open_backend(server.url, "memory://elsewhere")


def test_track_promote_read_back_and_pull_over_http(server: LiveServer, tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(MODEL)
    with tracking.init(project="org/digits", name="remote", tracking_uri=server.url) as run:
        tracking.log_params(lr=0.01, layers=[64, 32], odd=math.nan)
        for step in range(5):
            tracking.log_metrics(step=step, loss=1.0 / (step + 1), acc=0.8 + step * 0.03)
        tracking.log_metric("grad", math.nan, step=0)
        tracking.log_model_ref(model, name="model", framework="numpy")
        refused = tracking.promote_to_model_version(when="acc >= 0.99")
        version = tracking.promote_to_model_version(when="acc >= 0.9 and loss < 0.3")
    assert refused is None
    assert version is not None
    assert (version.name, version.project, version.run) == ("v1", "org/digits", run.uuid)
    assert version.manifest == {"model/model.bin": {"digest": sha(MODEL), "size": len(MODEL)}}
    # The bytes went to the server's store, uploaded by the client.
    assert server_store(server).has(sha(MODEL))

    runs = RunClient(run.uuid, tracking_uri=server.url)
    try:
        record = runs.get_run()
        assert record.status == "succeeded"
        assert record.params["lr"] == 0.01
        assert record.params["layers"] == [64, 32]
        assert math.isnan(record.params["odd"])
        metrics = runs.get_metrics()
        assert [p.step for p in metrics["loss"]] == [0, 1, 2, 3, 4]
        assert metrics["acc"][-1].value == pytest.approx(0.92)
        assert math.isnan(metrics["grad"][0].value)
        (ref,) = runs.get_artifacts_lineage()
        assert (ref.name, ref.kind, ref.digest) == ("model", "model", sha(MODEL))
        decisions = runs.get_promotions()
        assert [d.promoted for d in decisions] == [False, True]
        assert decisions[1].version == "v1"
        assert any("acc" in reason for reason in decisions[0].reasons)
    finally:
        runs.close()

    with ProjectClient(project="org/digits", tracking_uri=server.url) as client:
        got = client.get_model_version("v1")
        assert got == version
        assert [v.name for v in client.list_model_versions()] == ["v1"]
        assert [r.uuid for r in client.list_runs()] == [run.uuid]
        staged = client.stage_model_version("v1", "production", reason="ci")
        assert staged.stage == "production"
        lineage = client.get_model_version_lineage("v1")
        assert [r.name for r in lineage] == ["model"]
        target = client.pull_model_version("v1", tmp_path / "pulled")
        assert (target / "model" / "model.bin").read_bytes() == MODEL
    assert len(list((tmp_path / "pulled").rglob(".*.part"))) == 0


def test_pull_verifies_every_digest_and_names_the_file(server: LiveServer, tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(MODEL)
    with tracking.init(project="digits", tracking_uri=server.url):
        tracking.log_model_ref(model, name="model")
        version = tracking.promote_to_model_version()
    assert version is not None
    # Someone corrupts the blob in the server's store.
    Path(server_store(server).blob_path(sha(MODEL))).write_bytes(b"corrupted")
    with (
        ProjectClient(project="digits", tracking_uri=server.url) as client,
        pytest.raises(DigestMismatch, match=r"model/model\.bin") as info,
    ):
        client.pull_model_version(version.name, tmp_path / "out")
    assert info.value.expected == sha(MODEL)
    assert not (tmp_path / "out" / "model" / "model.bin").exists()


def test_clients_raise_the_embedded_errors(server: LiveServer) -> None:
    runs = RunClient("f" * 32, tracking_uri=server.url)
    try:
        with pytest.raises(RunNotFound, match=f"run '{'f' * 32}' does not exist"):
            runs.get_run()
    finally:
        runs.close()


def test_a_server_restarted_mid_run_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = start_server(tmp_path / "srv")
    port = urlsplit(first.url).port
    assert port is not None
    restarted: list[LiveServer] = []
    try:
        monkeypatch.setenv("ENSIGN_TOKEN", first.token)
        run = tracking.init(project="digits", tracking_uri=first.url)
        tracking.log_metrics(step=0, loss=1.0)
        run.flush()
        first.stop()

        def start_again() -> None:
            time.sleep(0.5)
            again = start_server(tmp_path / "srv", tracking_uri=first.tracking_uri, port=port)
            restarted.append(again)

        starter = threading.Thread(target=start_again)
        starter.start()
        tracking.log_metrics(step=1, loss=0.5)
        run.flush()  # retried until the server is back
        starter.join()
        tracking.log_metrics(step=2, loss=0.25)
        tracking.end()
        with RunClient(run.uuid, tracking_uri=first.url) as client:
            assert [p.step for p in client.get_metrics()["loss"]] == [0, 1, 2]
            assert client.get_run().status == "succeeded"
    finally:
        first.stop()
        for server in restarted:
            server.stop()


class AnswerLost(RestRegistry):
    """A registry whose first batch reaches the server but whose answer never comes back."""

    lost = 0

    def write_batch(self, batch: RunBatch) -> None:
        super().write_batch(batch)
        if self.lost == 0:
            self.lost += 1
            raise ServerUnavailable("the answer was lost on the way back")


def test_a_batch_whose_answer_was_lost_is_written_once(server: LiveServer) -> None:
    registry = AnswerLost(server.url, server.token)
    try:
        run = registry.create_run("org/keys")
        writer = BackgroundWriter(registry, run.uuid, interval=3600)
        writer.metrics.append(("loss", 0, 0.5, 1.0))
        writer.metrics.append(("loss", 1, 0.25, 2.0))
        with pytest.raises(ServerUnavailable):
            writer.flush()  # the server wrote it; the writer cannot know and keeps it
        writer.close()  # sent again, under the same key: the server answers as before
        points = registry.get_metrics(run.uuid)["loss"]
        assert [(p.step, p.value) for p in points] == [(0, 0.5), (1, 0.25)]
    finally:
        registry.close()


def test_a_project_token_downloads_only_its_projects_bytes(
    server: LiveServer, tmp_path: Path
) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(MODEL)
    shards = tmp_path / "shards"
    shards.mkdir()
    for index in range(20):  # more digests than are checked one by one
        (shards / f"{index}.bin").write_bytes(f"shard {index}".encode())
    with tracking.init(project="org/a", tracking_uri=server.url):
        tracking.log_model_ref(model, name="model")
        tracking.log_dir_ref(shards, name="shards")
    made = run_ensign("projects", "create", "org/b", "--tracking-uri", server.tracking_uri)
    assert made.returncode == 0, made.stderr
    tokens = {}
    for project in ("org/a", "org/b"):
        made = run_ensign(
            "tokens", "create", "--project", project, "--role", "read",
            "--tracking-uri", server.tracking_uri,
        )  # fmt: skip
        tokens[project] = made.stdout.strip()
    url = f"{server.url}/api/v1/blobs/downloads"
    body = {"digests": [sha(MODEL)]}
    mine = requests.post(url, json=body, headers=server.headers(tokens["org/a"]), timeout=30)
    assert mine.status_code == 200
    assert sha(MODEL) in mine.json()["downloads"]
    theirs = requests.post(url, json=body, headers=server.headers(tokens["org/b"]), timeout=30)
    assert theirs.status_code == 403
    assert "'org/b'" in theirs.json()["error"]["message"]
    many = {"digests": [sha(f"shard {i}".encode()) for i in range(20)]}
    mine = requests.post(url, json=many, headers=server.headers(tokens["org/a"]), timeout=30)
    assert len(mine.json()["downloads"]) == 20
    theirs = requests.post(url, json=many, headers=server.headers(tokens["org/b"]), timeout=30)
    assert theirs.status_code == 403
