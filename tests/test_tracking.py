"""Tracking: init, the run lifecycle, async logging, lineage refs, environment, bad input."""

from __future__ import annotations

import hashlib
import json
import math
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ensign import jsonio, tracking
from ensign.client import RunClient
from ensign.errors import (
    ArtifactNotFound,
    BackgroundError,
    DigestMismatch,
    InvalidMetric,
    InvalidName,
    RunEnded,
)
from ensign.records import ArtifactRef, Run
from ensign.storage.blobstore import BlobStore
from ensign.storage.hashing import manifest_digest

SCRIPTS = Path(__file__).parent / "scripts"


@pytest.fixture(autouse=True)
def _no_run_left_open() -> Iterator[None]:
    yield
    run = tracking.get_run()
    if run is not None and not run.ended:
        run.end()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_run(uuid: str, tracking_uri: str | Path) -> Run:
    with RunClient(uuid, tracking_uri=tracking_uri) as rc:
        return rc.get_run()


def refs_of(uuid: str, tracking_uri: str | Path) -> dict[tuple[str, bool], ArtifactRef]:
    with RunClient(uuid, tracking_uri=tracking_uri) as rc:
        return {(r.name, r.is_input): r for r in rc.get_artifacts_lineage()}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def make_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q")
    (path / "train.py").write_text("print('train')\n")
    git(path, "add", "train.py")
    git(path, "commit", "-q", "-m", "first")
    return path


# where runs go ----------------------------------------------------------------------------


def test_init_writes_to_the_explicit_tracking_folder(tmp_path: Path) -> None:
    folder = tmp_path / "explicit"
    run = tracking.init(project="org/digits", name="first", tracking_uri=folder)
    assert len(run.uuid) == 32
    assert all(c in "0123456789abcdef" for c in run.uuid)
    tracking.end()
    assert (folder / "ensign.db").is_file()
    assert not (tmp_path / ".ensign").exists()
    stored = read_run(run.uuid, folder)
    assert (stored.project, stored.name, stored.status) == ("org/digits", "first", "succeeded")
    assert stored.ended_at is not None


def test_init_defaults_to_dot_ensign_in_the_working_folder(tmp_path: Path) -> None:
    run = tracking.init(project="digits")
    tracking.end()
    assert (tmp_path / ".ensign" / "ensign.db").is_file()
    assert read_run(run.uuid, tmp_path / ".ensign").status == "succeeded"


def test_init_reads_the_tracking_uri_and_project_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "from-env"
    monkeypatch.setenv("ENSIGN_TRACKING_URI", str(folder))
    monkeypatch.setenv("ENSIGN_PROJECT", "env-project")
    monkeypatch.setenv("ENSIGN_ARTIFACTS_URI", str(tmp_path / "bytes"))
    (tmp_path / "f.txt").write_bytes(b"data")
    run = tracking.init()
    tracking.log_file_ref(tmp_path / "f.txt")
    tracking.end()
    assert not (tmp_path / ".ensign").exists()
    assert read_run(run.uuid, folder).project == "env-project"
    (ref,) = refs_of(run.uuid, folder).values()
    assert ref.store_uri == (tmp_path / "bytes").as_uri()
    assert BlobStore(ref.store_uri).read_bytes(sha(b"data")) == b"data"


# lifecycle --------------------------------------------------------------------------------


def test_context_manager_marks_the_run_succeeded(tracking_dir: Path) -> None:
    with tracking.init(project="p", tracking_uri=tracking_dir) as run:
        tracking.log_metric("loss", 0.5)
    assert run.ended
    assert read_run(run.uuid, tracking_dir).status == "succeeded"


def test_context_manager_marks_the_run_failed_and_lets_the_exception_through(
    tracking_dir: Path,
) -> None:
    error = ValueError("bad batch")
    with (  # noqa: PT012
        pytest.raises(ValueError, match="bad batch") as caught,
        tracking.init(project="p", tracking_uri=tracking_dir) as run,
    ):
        tracking.log_metric("loss", 0.5)
        raise error
    assert caught.value is error
    stored = read_run(run.uuid, tracking_dir)
    assert stored.status == "failed"
    assert stored.ended_at is not None
    with RunClient(run.uuid, tracking_uri=tracking_dir) as rc:
        assert [p.value for p in rc.get_metrics()["loss"]] == [0.5]


def test_context_manager_marks_the_run_stopped_on_keyboard_interrupt(tracking_dir: Path) -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        tracking.init(project="p", tracking_uri=tracking_dir) as run,
    ):
        raise KeyboardInterrupt
    assert read_run(run.uuid, tracking_dir).status == "stopped"


def test_end_waits_for_every_write(tracking_dir: Path) -> None:
    run = tracking.init(project="p", tracking_uri=tracking_dir, tags=["baseline"])
    for step in range(5000):
        tracking.log_metrics(step=step, loss=1.0 / (step + 1), acc=step / 5000)
    tracking.log_params(lr=0.01, batch_size=64, layers=[3, 4])
    tracking.log_tags("prod", ["nightly", "prod"])
    tracking.end()
    with RunClient(run.uuid, tracking_uri=tracking_dir) as rc:
        history = rc.get_metrics()
        stored = rc.get_run()
        only_acc = rc.get_metrics(["acc"])
    assert sorted(history) == ["acc", "loss"]
    assert [p.step for p in history["loss"]] == list(range(5000))
    assert [p.value for p in history["loss"]] == [1.0 / (s + 1) for s in range(5000)]
    assert list(only_acc) == ["acc"]
    assert stored.params == {"lr": 0.01, "batch_size": 64, "layers": [3, 4]}
    assert stored.tags == ["baseline", "prod", "nightly"]


def test_end_twice_is_harmless_and_end_without_a_run_does_nothing(tracking_dir: Path) -> None:
    run = tracking.init(project="p", tracking_uri=tracking_dir)
    run.end()
    run.end()
    tracking.end()
    assert read_run(run.uuid, tracking_dir).status == "succeeded"


def test_explicit_end_status(tracking_dir: Path) -> None:
    run = tracking.init(project="p", tracking_uri=tracking_dir)
    tracking.end("stopped")
    assert read_run(run.uuid, tracking_dir).status == "stopped"


def test_a_new_init_ends_the_active_run(tracking_dir: Path) -> None:
    first = tracking.init(project="p", tracking_uri=tracking_dir)
    second = tracking.init(project="p", tracking_uri=tracking_dir)
    assert first.ended
    assert tracking.get_run() is second
    tracking.end()
    assert read_run(first.uuid, tracking_dir).status == "succeeded"


# metrics, params, outputs, tags -------------------------------------------------------------


def test_step_none_takes_the_next_step_of_each_metric(tracking_dir: Path) -> None:
    with tracking.init(project="p", tracking_uri=tracking_dir) as run:
        tracking.log_metric("loss", 3.0)
        tracking.log_metric("loss", 2.0)
        tracking.log_metric("acc", 0.1)
        tracking.log_metric("loss", 1.0)
        tracking.log_metric("acc", 0.2, step=10)
        run.flush()  # the step counter carries across batches
        tracking.log_metric("acc", 0.3)
        tracking.log_metrics(acc=0.4, loss=0.5)
    with RunClient(run.uuid, tracking_uri=tracking_dir) as rc:
        history = rc.get_metrics()
    assert [(p.step, p.value) for p in history["loss"]] == [(0, 3.0), (1, 2.0), (2, 1.0), (3, 0.5)]
    assert [(p.step, p.value) for p in history["acc"]] == [
        (0, 0.1),
        (10, 0.2),
        (11, 0.3),
        (12, 0.4),
    ]


def test_log_metric_keeps_the_given_timestamp(tracking_dir: Path) -> None:
    with tracking.init(project="p", tracking_uri=tracking_dir) as run:
        tracking.log_metric("loss", 1.0, step=0, timestamp=1_700_000_000.5)
        tracking.log_metrics(step=1, timestamp=1_700_000_001.0, loss=0.5)
    with RunClient(run.uuid, tracking_uri=tracking_dir) as rc:
        points = rc.get_metrics()["loss"]
    assert [p.timestamp for p in points] == [1_700_000_000.5, 1_700_000_001.0]


def test_log_params_replaces_a_key_logged_again(tracking_dir: Path) -> None:
    with tracking.init(project="p", tracking_uri=tracking_dir) as run:
        tracking.log_params(lr=0.1, optimizer="sgd")
        run.flush()
        tracking.log_params(lr=0.2)
        tracking.log_inputs(batch_size=32, optimizer="adam")
    assert read_run(run.uuid, tracking_dir).params == {
        "lr": 0.2,
        "optimizer": "adam",
        "batch_size": 32,
    }


def test_log_outputs_and_tags(tracking_dir: Path) -> None:
    with tracking.init(project="p", tracking_uri=tracking_dir, tags=["a"]) as run:
        tracking.log_outputs(model_path="/models/m.pt", n_rows=1000)
        run.flush()
        tracking.log_outputs(n_rows=1200)
        tracking.log_tags("b", "a")
        tracking.log_tags(["c", "b"])
    stored = read_run(run.uuid, tracking_dir)
    assert stored.outputs == {"model_path": "/models/m.pt", "n_rows": 1200}
    assert stored.tags == ["a", "b", "c"]


# lineage refs -------------------------------------------------------------------------------


def test_log_artifact_ref_of_a_file(tmp_path: Path, tracking_dir: Path) -> None:
    data = b"weights " * 1000
    model = tmp_path / "model.bin"
    model.write_bytes(data)
    with tracking.init(project="p", tracking_uri=tracking_dir) as run:
        tracking.log_artifact_ref(model, summary={"epochs": 3})
    ref = refs_of(run.uuid, tracking_dir)[("model.bin", False)]
    assert ref.kind == "file"
    assert ref.digest == sha(data)
    assert ref.size == len(data)
    assert ref.uri == str(model)
    assert ref.summary == {"epochs": 3}
    assert ref.manifest == {"model.bin": {"digest": sha(data), "size": len(data)}}
    assert ref.store_uri is not None
    assert BlobStore(ref.store_uri).read_bytes(sha(data)) == data


def test_log_artifact_ref_of_a_folder(tmp_path: Path, tracking_dir: Path) -> None:
    folder = tmp_path / "checkpoint"
    (folder / "sub").mkdir(parents=True)
    files = {"config.json": b"{}", "sub/w.bin": b"\x00\x01" * 500, ".hidden": b"h"}
    for relative, data in files.items():
        (folder / relative).write_bytes(data)
    with tracking.init(project="p", tracking_uri=tracking_dir) as run:
        tracking.log_artifact_ref(folder)
    ref = refs_of(run.uuid, tracking_dir)[("checkpoint", False)]
    expected = {rel: {"digest": sha(data), "size": len(data)} for rel, data in files.items()}
    assert ref.kind == "dir"
    assert ref.manifest == expected
    assert ref.digest == manifest_digest(expected)
    assert ref.size == sum(len(d) for d in files.values())
    assert ref.store_uri is not None
    store = BlobStore(ref.store_uri)
    assert all(store.read_bytes(sha(data)) == data for data in files.values())


def test_ref_names_default_and_a_name_logged_again_replaces(
    tmp_path: Path, tracking_dir: Path
) -> None:
    big, small = tmp_path / "big.bin", tmp_path / "small.bin"
    big.write_bytes(b"b" * (24 * 1024 * 1024))  # still uploading when the second one is done
    small.write_bytes(b"small")
    with tracking.init(project="p", tracking_uri=tracking_dir) as run:
        run.flush()  # every upload thread is free: the two uploads below overlap
        tracking.log_artifact_ref(big, name="weights")
        tracking.log_artifact_ref(small, name="weights")
        tracking.log_file_ref(small, rel_path="renamed.bin")
        tracking.log_file_ref(small, is_input=True)
    refs = refs_of(run.uuid, tracking_dir)
    assert sorted(refs) == [("small.bin", False), ("small.bin", True), ("weights", False)]
    assert refs[("weights", False)].digest == sha(b"small")
    assert refs[("weights", False)].manifest == {"small.bin": {"digest": sha(b"small"), "size": 5}}
    assert list(refs[("small.bin", False)].manifest) == ["renamed.bin"]
    with RunClient(run.uuid, tracking_uri=tracking_dir) as rc:
        lineage = rc.get_artifacts_lineage()
    assert lineage[0].is_input  # inputs first


def test_the_ref_variants(tmp_path: Path, tracking_dir: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"torch")
    data_file = tmp_path / "train.csv"
    data_file.write_bytes(b"a,b\n1,2\n")
    folder = tmp_path / "outputs"
    folder.mkdir()
    (folder / "pred.csv").write_bytes(b"p\n1\n")
    content = {"rows": [1, 2, 3]}
    with tracking.init(project="p", tracking_uri=tracking_dir) as run:
        tracking.log_model_ref(model, framework="torch", summary={"params": 10})
        tracking.log_data_ref("inline", content=content)
        tracking.log_data_ref("raw", content=b"raw bytes")
        tracking.log_data_ref("train", path=data_file)
        tracking.log_data_ref("remote", hash="a" * 64, summary={"rows": 10})
        tracking.log_file_ref(model, name="copy-of-model")
        tracking.log_dir_ref(folder, name="preds")
        tracking.log_artifact_ref("s3://bucket/key.parquet", hash="b" * 64, is_input=True)
    refs = refs_of(run.uuid, tracking_dir)

    m = refs[("model.pt", False)]
    assert (m.kind, m.digest, m.summary) == (
        "model",
        sha(b"torch"),
        {"params": 10, "framework": "torch"},
    )
    inline = refs[("inline", True)]
    assert (inline.kind, inline.digest) == ("data", sha(jsonio.dumps(content).encode()))
    assert refs[("raw", True)].digest == sha(b"raw bytes")
    train = refs[("train", True)]
    assert (train.kind, train.digest, train.size, train.uri) == (
        "data",
        sha(b"a,b\n1,2\n"),
        8,
        str(data_file),
    )
    assert train.manifest == {}  # a data path is hashed, not uploaded
    assert refs[("remote", True)].digest == "a" * 64
    assert refs[("copy-of-model", False)].kind == "file"
    preds = refs[("preds", False)]
    assert (preds.kind, list(preds.manifest)) == ("dir", ["pred.csv"])
    remote = refs[("key.parquet", True)]
    assert (remote.kind, remote.uri, remote.digest) == ("file", "s3://bucket/key.parquet", "b" * 64)


def test_log_code_ref_records_commit_and_dirty_flag(tmp_path: Path, tracking_dir: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    head = git(repo, "rev-parse", "HEAD")
    with tracking.init(project="p", tracking_uri=tracking_dir) as run:
        tracking.log_code_ref(repo)
        run.flush()
        clean = refs_of(run.uuid, tracking_dir)[("code", True)]
        (repo / "train.py").write_text("print('changed')\n")
        tracking.log_code_ref(repo / "train.py")
    dirty = refs_of(run.uuid, tracking_dir)[("code", True)]
    assert clean.kind == "coderef"
    assert clean.summary["commit"] == head
    assert clean.summary["is_dirty"] is False
    assert Path(clean.summary["root"]).resolve() == repo.resolve()
    assert dirty.summary["commit"] == head
    assert dirty.summary["is_dirty"] is True


def test_log_env_stores_the_environment_as_an_input(tracking_dir: Path) -> None:
    with tracking.init(project="p", tracking_uri=tracking_dir) as run:
        tracking.log_env()
    env = refs_of(run.uuid, tracking_dir)[("env", True)]
    assert env.kind == "env"
    assert env.summary["python"] == platform.python_version()
    assert env.store_uri is not None
    assert env.digest is not None
    stored = json.loads(BlobStore(env.store_uri).read_bytes(env.digest))
    assert stored["python"] == platform.python_version()
    assert stored["packages"]["SQLAlchemy"]


def test_the_environment_is_captured_on_the_run(
    tmp_path: Path, tracking_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "project")
    monkeypatch.chdir(repo)
    with tracking.init(project="p", tracking_uri=tracking_dir) as run:
        pass
    environment = read_run(run.uuid, tracking_dir).environment
    assert environment["python"] == platform.python_version()
    assert environment["host"] == socket.gethostname()
    assert "SQLAlchemy" in environment["packages"]
    assert environment["git"]["commit"] == git(repo, "rev-parse", "HEAD")
    assert environment["git"]["is_dirty"] is False


# runs left open -----------------------------------------------------------------------------


def run_script(tracking_dir: Path, mode: str) -> tuple[subprocess.CompletedProcess[str], str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "leave_run_open.py"), str(tracking_dir), mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.split()
    assert lines, done.stderr
    return done, lines[0]


@pytest.mark.slow
def test_a_forgotten_run_is_closed_at_interpreter_exit(tracking_dir: Path) -> None:
    done, uuid = run_script(tracking_dir, "exit")
    assert done.returncode == 0, done.stderr
    stored = read_run(uuid, tracking_dir)
    assert stored.status == "succeeded"
    assert stored.ended_at is not None
    assert stored.params == {"lr": 0.1, "mode": "exit"}
    assert stored.outputs == {"result": "left open"}
    with RunClient(uuid, tracking_uri=tracking_dir) as rc:
        assert [p.step for p in rc.get_metrics()["loss"]] == list(range(200))
        (model,) = rc.get_artifacts_lineage()
    assert (model.name, model.kind, model.digest) == (
        "model-exit.bin",
        "model",
        sha(b"exit" * 100_000),
    )


@pytest.mark.slow
def test_an_uncaught_exception_marks_the_forgotten_run_failed(tracking_dir: Path) -> None:
    done, uuid = run_script(tracking_dir, "raise")
    assert done.returncode == 1
    assert "boom from the script" in done.stderr  # the original traceback is still printed
    stored = read_run(uuid, tracking_dir)
    assert stored.status == "failed"
    with RunClient(uuid, tracking_uri=tracking_dir) as rc:
        assert len(rc.get_metrics()["loss"]) == 200


@pytest.mark.slow
def test_an_uncaught_keyboard_interrupt_marks_the_forgotten_run_stopped(
    tracking_dir: Path,
) -> None:
    done, uuid = run_script(tracking_dir, "interrupt")
    assert done.returncode != 0
    assert read_run(uuid, tracking_dir).status == "stopped"


# bad input ----------------------------------------------------------------------------------


def test_a_ref_to_a_missing_path_fails_at_once(tmp_path: Path, tracking_dir: Path) -> None:
    missing = tmp_path / "nope" / "model.bin"
    with tracking.init(project="p", tracking_uri=tracking_dir) as run:
        with pytest.raises(ArtifactNotFound, match="no such file or folder") as caught:
            tracking.log_artifact_ref(missing)
        assert str(missing) in str(caught.value)
        with pytest.raises(ArtifactNotFound):
            tracking.log_model_ref(missing)
        with pytest.raises(ArtifactNotFound):
            tracking.log_data_ref("train", path=missing)
        with pytest.raises(ArtifactNotFound):
            tracking.log_dir_ref(tmp_path / "no-folder")
    assert read_run(run.uuid, tracking_dir).status == "succeeded"
    assert refs_of(run.uuid, tracking_dir) == {}


def test_logging_after_end_raises_run_ended(tmp_path: Path, tracking_dir: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    run = tracking.init(project="p", tracking_uri=tracking_dir)
    tracking.end()
    calls = [
        lambda: tracking.log_metric("loss", 1.0),
        lambda: tracking.log_metrics(loss=1.0),
        lambda: tracking.log_params(lr=1),
        lambda: tracking.log_outputs(x=1),
        lambda: tracking.log_tags("t"),
        lambda: tracking.log_artifact_ref(tmp_path / "f.txt"),
        lambda: tracking.log_data_ref("d", content=b"x"),
        lambda: tracking.log_code_ref(),
        lambda: tracking.log_env(),
        lambda: tracking.promote_to_artifact_version(),
        lambda: run.log_metric("loss", 1.0),
    ]
    for call in calls:
        with pytest.raises(RunEnded, match="has ended"):
            call()


@pytest.mark.parametrize("value", ["high", None, [1.0], {"v": 1}])
def test_a_non_numeric_metric_value_is_refused(tracking_dir: Path, value: object) -> None:
    with tracking.init(project="p", tracking_uri=tracking_dir):
        with pytest.raises(InvalidMetric, match="'loss' must be a number"):
            tracking.log_metric("loss", value)  # type: ignore[arg-type]
        with pytest.raises(InvalidMetric, match="must be a number"):
            tracking.log_metrics(step=1, loss=value)  # type: ignore[arg-type]


def test_a_bad_metric_name_is_refused(tracking_dir: Path) -> None:
    with tracking.init(project="p", tracking_uri=tracking_dir):
        for name in ["", "a\nb", "x" * 251]:
            with pytest.raises(InvalidMetric, match="invalid metric name"):
                tracking.log_metric(name, 1.0)


def test_nan_and_infinities_are_stored_as_such(database_url: str, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    with tracking.init(project="p", tracking_uri=database_url, artifacts_uri=artifacts) as run:
        tracking.log_metric("loss", math.nan)
        tracking.log_metric("loss", math.inf)
        tracking.log_metric("loss", -math.inf)
        tracking.log_metric("loss", 0.25)
    with RunClient(run.uuid, tracking_uri=database_url) as rc:
        values = [p.value for p in rc.get_metrics()["loss"]]
    assert math.isnan(values[0])
    assert values[1:] == [math.inf, -math.inf, 0.25]


@pytest.mark.parametrize("project", ["a/b/c", "/lead", "has space", "x" * 129, "../up", "ünï"])
def test_an_invalid_project_key_is_refused(tracking_dir: Path, project: str) -> None:
    with pytest.raises(InvalidName, match="project key"):
        tracking.init(project=project, tracking_uri=tracking_dir)
    assert tracking.get_run() is None or tracking.get_run().ended  # type: ignore[union-attr]


def test_a_background_failure_is_raised_by_end_and_fails_the_run(
    tmp_path: Path, tracking_dir: Path
) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"real bytes")
    wrong = "0" * 64
    run = tracking.init(project="p", tracking_uri=tracking_dir)
    tracking.log_metric("loss", 0.1)
    tracking.log_artifact_ref(model, hash=wrong)  # returns at once; the upload fails later
    with pytest.raises(BackgroundError, match="background work failed") as caught:
        tracking.end()
    cause = caught.value.__cause__
    assert isinstance(cause, DigestMismatch)
    assert (cause.path, cause.expected, cause.actual) == (str(model), wrong, sha(b"real bytes"))
    assert caught.value.errors == (cause,)
    assert read_run(run.uuid, tracking_dir).status == "failed"
    with RunClient(run.uuid, tracking_uri=tracking_dir) as rc:
        assert [p.value for p in rc.get_metrics()["loss"]] == [0.1]  # the rest is written
        assert rc.get_artifacts_lineage() == []
    # nothing half-written in the store: no blob for the bad digest, no temporary file
    store = tracking_dir / "artifacts"
    assert not (store / "tmp").exists() or not any((store / "tmp").iterdir())


def test_a_wrong_hash_is_caught_even_when_the_store_holds_that_digest(
    tmp_path: Path, tracking_dir: Path
) -> None:
    first, second, same = tmp_path / "first.bin", tmp_path / "second.bin", tmp_path / "same.bin"
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    same.write_bytes(b"first")
    run = tracking.init(project="p", tracking_uri=tracking_dir)
    tracking.log_artifact_ref(first)
    run.flush()
    tracking.log_artifact_ref(same, hash=sha(b"first"))  # right: nothing to upload
    tracking.log_artifact_ref(second, hash=sha(b"first"))  # wrong, and that blob is stored
    with pytest.raises(BackgroundError) as caught:
        tracking.end()
    cause = caught.value.__cause__
    assert isinstance(cause, DigestMismatch)
    assert (cause.path, cause.actual) == (str(second), sha(b"second"))
    refs = refs_of(run.uuid, tracking_dir)
    assert sorted(name for name, _ in refs) == ["first.bin", "same.bin"]
    assert refs[("same.bin", False)].digest == sha(b"first")


def test_refs_without_upload_or_hash(tmp_path: Path, tracking_dir: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"not uploaded")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"a")
    with tracking.init(project="p", tracking_uri=tracking_dir) as run:
        tracking.log_artifact_ref(big, name="hashed", upload=False)
        tracking.log_artifact_ref(big, name="unhashed", skip_hash_calculation=True)
        tracking.log_artifact_ref(folder, name="folder", upload=False)
    refs = refs_of(run.uuid, tracking_dir)
    hashed, unhashed, listed = (
        refs[("hashed", False)],
        refs[("unhashed", False)],
        refs[("folder", False)],
    )
    assert (hashed.digest, hashed.size, hashed.manifest) == (sha(b"not uploaded"), 12, {})
    assert (unhashed.digest, unhashed.size, unhashed.manifest) == (None, 12, {})
    assert listed.kind == "dir"
    assert listed.digest == manifest_digest({"a.txt": {"digest": sha(b"a"), "size": 1}})
    assert listed.manifest == {}
    store = BlobStore((tracking_dir / "artifacts").as_uri())
    assert not store.has(sha(b"not uploaded"))


def test_a_background_failure_in_a_with_block(tmp_path: Path, tracking_dir: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"real bytes")
    with (
        pytest.raises(BackgroundError) as caught,
        tracking.init(project="p", tracking_uri=tracking_dir) as run,
    ):
        tracking.log_artifact_ref(model, hash="0" * 64)
    assert isinstance(caught.value.__cause__, DigestMismatch)
    assert read_run(run.uuid, tracking_dir).status == "failed"


def test_the_block_exception_wins_over_a_background_failure(
    tmp_path: Path, tracking_dir: Path
) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"real bytes")
    with (  # noqa: PT012
        pytest.raises(KeyError) as caught,
        tracking.init(project="p", tracking_uri=tracking_dir) as run,
    ):
        tracking.log_artifact_ref(model, hash="0" * 64)
        raise KeyError("the user's error")
    assert any("background work failed" in note for note in caught.value.__notes__)
    assert read_run(run.uuid, tracking_dir).status == "failed"


def test_promote_raises_a_background_failure_before_registering(
    tmp_path: Path, tracking_dir: Path
) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"real bytes")
    run = tracking.init(project="p", tracking_uri=tracking_dir)
    tracking.log_artifact_ref(model, hash="0" * 64)
    with pytest.raises(BackgroundError) as caught:
        tracking.promote_to_model_version()
    assert isinstance(caught.value.__cause__, DigestMismatch)
    tracking.end()  # the failure was reported once; the run itself can still end
    stored = read_run(run.uuid, tracking_dir)
    assert not stored.is_promoted
