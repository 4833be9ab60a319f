"""``ensign runs ...`` and ``ensign gc`` through click's runner, on data the library wrote."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ensign import tracking
from ensign.backend import open_backend
from ensign.cli.main import cli
from ensign.client import ProjectClient

MODEL_BYTES = b"weights:" + bytes(range(256)) * 40


@dataclass(frozen=True)
class Tracked:
    """A tracking store holding one promoted run in project ``digits``."""

    uri: str
    run: str
    folder: Path

    def blob_files(self) -> list[Path]:
        return sorted(p for p in (self.folder / "artifacts" / "blobs").rglob("*") if p.is_file())


@pytest.fixture
def tracked(tmp_path: Path) -> Tracked:
    model = tmp_path / "model.bin"
    model.write_bytes(MODEL_BYTES)
    uri = str(tmp_path / "tracking")
    with tracking.init(project="digits", name="baseline", tracking_uri=uri) as run:
        tracking.log_params(lr=0.1)
        tracking.log_metrics(step=1, acc=0.8, loss=0.5)
        tracking.log_metrics(step=2, acc=0.95, loss=0.2)
        tracking.log_model_ref(model, name="model")
        assert tracking.promote_to_artifact_version(when="acc >= 0.9") is not None
        assert tracking.promote_to_model_version(when="acc >= 0.9") is not None
    return Tracked(uri, run.uuid, tmp_path / "tracking")


def ensign(tracked: Tracked, *args: str) -> Result:
    """Run ``ensign ARGS --tracking-uri URI`` in-process."""
    return CliRunner().invoke(cli, [*args, "--tracking-uri", tracked.uri])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def one_line_error(result: Result, code: int = 1) -> str:
    """Assert the command failed with exactly one ``error:`` line and no traceback."""
    assert result.exit_code == code, (result.output, result.exception)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# runs ------------------------------------------------------------------------------------


def test_runs_ls_and_get(tracked: Tracked) -> None:
    table = ok(ensign(tracked, "runs", "ls", "-p", "digits")).stdout
    assert tracked.run in table
    assert "succeeded" in table
    listed = as_json(ensign(tracked, "runs", "ls", "-p", "digits", "--json"))
    assert [r["uuid"] for r in listed] == [tracked.run]
    assert listed[0]["is_promoted"] is True
    assert (
        as_json(ensign(tracked, "runs", "ls", "-p", "digits", "--query", "status:failed", "--json"))
        == []
    )
    run = as_json(ensign(tracked, "runs", "get", tracked.run, "--json"))
    assert (run["name"], run["params"], run["status"]) == ("baseline", {"lr": 0.1}, "succeeded")
    assert run["started_at"] <= run["ended_at"]
    view = ok(ensign(tracked, "runs", "get", tracked.run)).stdout
    assert "baseline" in view
    assert '{"lr": 0.1}' in view


def test_runs_get_summarises_the_environment(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@e", *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    git("init", "-q")
    (tmp_path / "train.py").write_text("print('hi')\n")
    git("add", "train.py")
    git("commit", "-q", "-m", "first")
    commit = git("rev-parse", "HEAD")
    uri = str(tmp_path / "tracking")
    with tracking.init(project="digits", tracking_uri=uri) as run:
        pass
    view = ok(CliRunner().invoke(cli, ["runs", "get", run.uuid, "--tracking-uri", uri])).stdout
    assert f'"git commit": "{commit}"' in view
    assert '"git dirty": false' in view
    assert '"packages": ' in view
    assert "ensign" not in view.split("environment", 1)[1]  # package names only in --json
    full = as_json(
        CliRunner().invoke(cli, ["runs", "get", run.uuid, "--json", "--tracking-uri", uri])
    )
    assert full["environment"]["git"]["commit"] == commit
    assert "ensign" in full["environment"]["packages"]


def test_runs_metrics(tracked: Tracked) -> None:
    metrics = as_json(ensign(tracked, "runs", "metrics", tracked.run, "--json"))
    assert [p["value"] for p in metrics["acc"]] == [0.8, 0.95]
    assert [p["step"] for p in metrics["loss"]] == [1, 2]
    only = as_json(ensign(tracked, "runs", "metrics", tracked.run, "--names", "loss", "--json"))
    assert list(only) == ["loss"]
    table = ok(ensign(tracked, "runs", "metrics", tracked.run)).stdout
    assert "acc" in table
    assert "0.95" in table
    line = one_line_error(ensign(tracked, "runs", "metrics", tracked.run, "--names", "f1"))
    assert "unknown metric 'f1'" in line
    assert "acc, loss" in line


def test_runs_of_an_unknown_run_are_one_line(tracked: Tracked) -> None:
    missing = "0" * 32
    for command in ("get", "metrics"):
        line = one_line_error(ensign(tracked, "runs", command, missing))
        assert f"run '{missing}' does not exist" in line


# gc --------------------------------------------------------------------------------------


def _orphans(tracked: Tracked) -> tuple[str, str, Path]:
    """Put an old orphan blob, a young orphan blob and an old temporary object in the store."""
    backend = open_backend(tracked.uri)
    try:
        old = backend.store.put_bytes(b"nobody refers to me").digest
        young = backend.store.put_bytes(b"just uploaded").digest
    finally:
        backend.close()
    two_hours_ago = time.time() - 7200
    old_file = tracked.folder / "artifacts" / "blobs" / "sha256" / old[:2] / old[2:]
    os.utime(old_file, (two_hours_ago, two_hours_ago))
    leftover = tracked.folder / "artifacts" / "tmp" / "dead.part"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"half")
    os.utime(leftover, (two_hours_ago, two_hours_ago))
    return old, young, leftover


def test_gc_dry_run_removes_nothing(tracked: Tracked) -> None:
    old, young, leftover = _orphans(tracked)
    before = tracked.blob_files()
    result = ok(ensign(tracked, "gc", "--dry-run"))
    assert f"would remove blob sha256:{old}" in result.stdout
    assert young not in result.stdout
    assert "would remove temporary object" in result.stdout
    assert "would free" in result.stdout
    assert tracked.blob_files() == before
    assert leftover.exists()


def test_gc_removes_old_orphans_and_keeps_referenced_blobs(
    tracked: Tracked, tmp_path: Path
) -> None:
    old, young, leftover = _orphans(tracked)
    referenced_before = len(tracked.blob_files()) - 2
    report = as_json(ensign(tracked, "gc", "--json"))
    assert report["dry_run"] is False
    assert report["blobs"] == [old]
    assert len(report["temporary"]) == 1
    assert report["freed_bytes"] == len(b"nobody refers to me") + len(b"half")
    assert not leftover.exists()
    names = {p.parent.name + p.name for p in tracked.blob_files()}
    assert old not in names
    assert young in names  # younger than the grace period
    assert len(names) == referenced_before + 1
    ok(ensign(tracked, "artifacts", "pull", "-p", "digits", "-ver", "v1", "--path", "after"))
    assert (tmp_path / "after" / "model" / "model.bin").read_bytes() == MODEL_BYTES
    result = ok(ensign(tracked, "gc", "--grace-period", "0"))
    assert f"removed blob sha256:{young}" in result.stdout
    assert "freed 13 bytes" in result.stdout


def test_gc_keeps_the_bytes_a_deleted_version_shared(tracked: Tracked) -> None:
    with ProjectClient("digits", tracking_uri=tracked.uri) as client:
        client.delete_artifact_version("v1")
    # the model version and the run's refs still name the bytes: nothing to collect
    report = as_json(ensign(tracked, "gc", "--grace-period", "0", "--json"))
    assert report["blobs"] == []


def test_gc_rejects_a_negative_grace_period(tracked: Tracked) -> None:
    line = one_line_error(ensign(tracked, "gc", "--grace-period", "-1"), code=2)
    assert "--grace-period" in line


def test_version_flag() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "ensign 0.1.0"
