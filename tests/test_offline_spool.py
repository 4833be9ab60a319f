"""The offline spool: runs that cannot reach their server lose nothing and are sent once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest

from ensign import tracking
from ensign.backend import open_backend
from ensign.client import ProjectClient, RunClient
from ensign.errors import ServerUnavailable
from ensign.registry.base import RunBatch
from ensign.registry.rest import RestRegistry
from ensign.registry.rest.session import RestSession
from ensign.tracking.run import Run
from ensign.tracking.spool import Spool
from serving import LiveServer, free_port, run_ensign, start_server


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give up on an absent server after about a second instead of thirty."""
    monkeypatch.setattr(RestSession, "attempts", 3)
    monkeypatch.setattr(RestSession, "backoff", 0.05)
    monkeypatch.setattr(RestSession, "deadline", 1.0)


def admin_token(store: Path) -> str:
    made = run_ensign("tokens", "create", "--role", "admin", "--tracking-uri", str(store))
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@dataclass
class Away:
    """A server that is not there yet: its store, its URL, and how to start it."""

    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        return start_server(self.folder, tracking_uri=str(self.folder / "store"), port=self.port)


@pytest.fixture
def away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Away:
    """A server's store with an administrator token (in ``ENSIGN_TOKEN``), not serving yet."""
    monkeypatch.setenv("ENSIGN_TOKEN", admin_token(tmp_path / "server" / "store"))
    return Away(tmp_path / "server", free_port())


def point_count(url: str, run_uuid: str) -> dict[str, list[tuple[int, float]]]:
    with RunClient(run_uuid, tracking_uri=url) as rc:
        return {k: [(p.step, p.value) for p in v] for k, v in rc.get_metrics().items()}


def offline_run(url: str, tmp_path: Path) -> tuple[str, Path]:
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights " * 5000)
    with tracking.init(project="org/offline", name="away", tracking_uri=url) as run:
        assert run.offline
        tracking.log_params(lr=0.01)
        for step in range(5):
            tracking.log_metrics(step=step, loss=1.0 / (step + 1))
        tracking.log_model_ref(model, name="model")
        with pytest.raises(ServerUnavailable, match="promotion needs the server"):
            tracking.promote_to_model_version(when="loss < 2")
    return run.uuid, model


def test_a_run_that_cannot_reach_its_server_is_spooled_then_synced(
    away: Away, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = away.url
    run_uuid, model = offline_run(url, tmp_path)
    said = capsys.readouterr().err
    assert said.count("offline spool") == 1  # said once
    assert run_uuid in said
    assert Spool(url).pending() == [run_uuid]

    server = away.start()
    try:
        synced = run_ensign("sync", "--tracking-uri", url)
        assert synced.returncode == 0, synced.stderr
        assert synced.stdout.strip() == f"sent 1 runs (5 metric points, 1 blobs) to {url}"
        with RunClient(run_uuid, tracking_uri=url) as rc:
            run = rc.get_run()
            refs = {r.name: r for r in rc.get_artifacts_lineage()}
        assert (run.status, run.name, run.params) == ("succeeded", "away", {"lr": 0.01})
        assert run.ended_at is not None
        assert point_count(url, run_uuid) == {"loss": [(s, 1.0 / (s + 1)) for s in range(5)]}
        # The bytes went to the server's store: a version made from the run pulls them back.
        with ProjectClient("org/offline", tracking_uri=url) as pc:
            pc.register_model_version("v1", run=run_uuid, artifacts=["model"])
            pulled = pc.pull_model_version("v1", tmp_path / "pulled")
        assert (pulled / "model" / "model.bin").read_bytes() == model.read_bytes()
        assert refs["model"].store_uri is not None
        assert "spool" not in refs["model"].store_uri
        again = run_ensign("sync", "--tracking-uri", url)
        assert again.stdout.strip() == f"nothing spooled for {url}"
        assert point_count(url, run_uuid)["loss"] == [(s, 1.0 / (s + 1)) for s in range(5)]
    finally:
        server.stop()


def test_the_next_run_start_sends_the_spool(away: Away, tmp_path: Path) -> None:
    url = away.url
    run_uuid, _ = offline_run(url, tmp_path)
    server = away.start()
    try:
        with tracking.init(project="org/offline", name="back", tracking_uri=url) as run:
            assert not run.offline
        assert Spool(url).pending() == []
        with ProjectClient("org/offline", tracking_uri=url) as pc:
            names = sorted(r.name or "" for r in pc.list_runs())
        assert names == ["away", "back"]
        assert point_count(url, run_uuid)["loss"][-1] == (4, 0.2)
    finally:
        server.stop()


def test_a_run_that_loses_its_server_midway_keeps_what_it_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_server(tmp_path / "server")
    monkeypatch.setenv("ENSIGN_TOKEN", server.token)
    run = tracking.init(project="org/midway", tracking_uri=server.url)
    for step in range(3):
        run.log_metrics(step=step, acc=step / 10)
    run.flush()
    server.stop()
    for step in range(3, 6):
        run.log_metrics(step=step, acc=step / 10)
    run.log_params(after="outage")
    run.end()  # nothing raised: what the server could not take is in the spool
    assert "offline spool" in capsys.readouterr().err
    back = start_server(
        tmp_path / "server", tracking_uri=server.tracking_uri, port=int(server.url.rsplit(":")[-1])
    )
    try:
        remote = open_backend(back.url)
        try:
            with Spool(back.url) as spool:
                report = spool.sync(remote)
        finally:
            remote.close()
        assert report.runs == [run.uuid]
        assert point_count(back.url, run.uuid) == {"acc": [(s, s / 10) for s in range(6)]}
        with RunClient(run.uuid, tracking_uri=back.url) as rc:
            record = rc.get_run()
        assert record.status == "succeeded"
        assert record.params == {"after": "outage"}
    finally:
        back.stop()


def test_a_sync_interrupted_after_sending_sends_nothing_twice(
    away: Away, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = away.url
    run_uuid, _ = offline_run(url, tmp_path)
    server: LiveServer = away.start()
    try:

        def crash(self: Spool, run_uuid: str) -> None:
            raise KeyboardInterrupt("killed after the server took the run")

        remote = open_backend(url)
        try:
            with monkeypatch.context() as patch, Spool(url) as spool:
                patch.setattr(Spool, "_forget", crash)
                with pytest.raises(KeyboardInterrupt):
                    spool.sync(remote)
        finally:
            remote.close()
        assert Spool(url).pending() == [run_uuid]  # still spooled: the crash came first
        synced = run_ensign("sync", "--tracking-uri", url)
        assert synced.returncode == 0, synced.stderr
        assert point_count(url, run_uuid) == {"loss": [(s, 1.0 / (s + 1)) for s in range(5)]}
        with RunClient(run_uuid, tracking_uri=url) as rc:
            assert len(rc.get_artifacts_lineage()) == 1
    finally:
        server.stop()


def test_sync_of_a_folder_store_is_a_one_line_error(tmp_path: Path) -> None:
    answer = run_ensign("sync", "--tracking-uri", str(tmp_path / "store"))
    assert answer.returncode == 1
    assert answer.stderr.strip().startswith("error: ")
    assert "is not a server" in answer.stderr


class AnswerLost(RestRegistry):
    """The server writes the first batch, then the connection drops before its answer."""

    lost = 0

    def write_batch(self, batch: RunBatch) -> None:
        super().write_batch(batch)
        if self.lost == 0 and batch.metrics:
            self.lost += 1
            raise ServerUnavailable("the connection dropped before the answer")


def test_a_spooled_batch_the_server_did_write_is_not_written_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server(tmp_path / "server")
    monkeypatch.setenv("ENSIGN_TOKEN", server.token)
    try:
        opened = open_backend(server.url)
        backend = dataclasses.replace(opened, registry=AnswerLost(server.url, server.token))
        opened.registry.close()
        run = Run(backend, "org/lost", capture_env=False)
        run.log_metrics(step=0, acc=0.5)
        run.log_metrics(step=1, acc=0.75)
        run.end()  # the first batch went to the spool, though the server has it
        assert Spool(server.url).pending() == [run.uuid]
        remote = open_backend(server.url)
        try:
            with Spool(server.url) as spool:
                report = spool.sync(remote)
        finally:
            remote.close()
        assert report.runs == [run.uuid]
        assert point_count(server.url, run.uuid) == {"acc": [(0, 0.5), (1, 0.75)]}
    finally:
        server.stop()


def test_a_run_still_being_logged_is_not_synced_under_it(away: Away, tmp_path: Path) -> None:
    url = away.url
    run = tracking.init(project="org/live", tracking_uri=url)
    assert run.offline
    run.log_metrics(step=0, loss=1.0)
    run.flush()
    server = away.start()
    try:
        synced = run_ensign("sync", "--tracking-uri", url)  # another process
        assert synced.returncode == 0, synced.stderr
        assert f"run {run.uuid} is still being logged" in synced.stdout
        run.log_metrics(step=1, loss=0.5)
        run.end()
        synced = run_ensign("sync", "--tracking-uri", url)
        assert synced.stdout.startswith("sent 1 runs (2 metric points")
        assert point_count(url, run.uuid) == {"loss": [(0, 1.0), (1, 0.5)]}
    finally:
        server.stop()


def test_what_follows_a_spooled_write_is_spooled_too_and_synced_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server(tmp_path / "server")
    port = int(server.url.rsplit(":")[-1])
    monkeypatch.setenv("ENSIGN_TOKEN", server.token)
    run = tracking.init(project="org/order", tracking_uri=server.url)
    run.log_params(lr=1)
    run.flush()
    server.stop()
    run.log_params(lr=2)
    run.flush()  # to the spool: the server is away
    back = start_server(tmp_path / "server", tracking_uri=server.tracking_uri, port=port)
    try:
        model = tmp_path / "model.bin"
        model.write_bytes(b"checkpoint " * 100)
        run.log_params(lr=3)  # the server is back, but lr=2 waits in the spool: this follows it
        run.log_model_ref(model, name="model")
        run.end()
        with RunClient(run.uuid, tracking_uri=back.url) as rc:
            assert rc.get_run().params == {"lr": 1}  # nothing overtook the spool
            assert rc.get_run().status == "running"
        synced = run_ensign("sync", "--tracking-uri", back.url)
        assert synced.returncode == 0, synced.stderr
        with RunClient(run.uuid, tracking_uri=back.url) as rc:
            record = rc.get_run()
            refs = rc.get_artifacts_lineage()
        assert (record.params, record.status) == ({"lr": 3}, "succeeded")
        assert [r.name for r in refs] == ["model"]
        with ProjectClient("org/order", tracking_uri=back.url) as pc:
            pc.register_model_version("v1", run=run.uuid, artifacts=["model"])
            pulled = pc.pull_model_version("v1", tmp_path / "pulled")
        assert (pulled / "model" / "model.bin").read_bytes() == model.read_bytes()
    finally:
        back.stop()
