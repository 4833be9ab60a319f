"""ProjectClient and RunClient: versions, stages, queries, pull, copy, transfer, lineage, runs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ensign import Stages, tracking
from ensign.client import ProjectClient, RunClient
from ensign.client.pull import METADATA_FILE
from ensign.errors import (
    ArtifactNotFound,
    DigestMismatch,
    InvalidName,
    InvalidQuery,
    InvalidStage,
    ProjectNotFound,
    RunNotFound,
    TargetNotEmpty,
    VersionExists,
    VersionNotFound,
)

PROJECT = "org/digits"
MODEL = b"model weights " * 100
CONFIG = b'{"layers": 3}'
HEAD = b"head bytes"
DATA = b"x,y\n1,2\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Tracked:
    """A finished run with one input, a model file and a checkpoint folder."""

    tracking_dir: Path
    run: str

    def client(self, project: str = PROJECT) -> ProjectClient:
        return ProjectClient(project, tracking_uri=self.tracking_dir)


@pytest.fixture(autouse=True)
def _no_run_left_open() -> Iterator[None]:
    yield
    run = tracking.get_run()
    if run is not None and not run.ended:
        run.end()


@pytest.fixture
def tracked(tmp_path: Path, tracking_dir: Path) -> Tracked:
    (tmp_path / "train.csv").write_bytes(DATA)
    (tmp_path / "model.bin").write_bytes(MODEL)
    ckpt = tmp_path / "ckpt"
    (ckpt / "layers").mkdir(parents=True)
    (ckpt / "config.json").write_bytes(CONFIG)
    (ckpt / "layers" / "head.bin").write_bytes(HEAD)
    with tracking.init(project=PROJECT, name="trainer", tracking_uri=tracking_dir) as run:
        tracking.log_params(lr=0.1)
        tracking.log_metrics(step=0, acc=0.5, loss=0.9)
        tracking.log_metrics(step=1, acc=0.9, loss=0.3)
        tracking.log_data_ref("train", path=tmp_path / "train.csv")
        tracking.log_model_ref(tmp_path / "model.bin", name="model")
        tracking.log_dir_ref(ckpt, name="ckpt")
    return Tracked(tracking_dir, run.uuid)


KINDS = ["artifact", "model"]


def op(pc: ProjectClient, name: str, kind: str) -> Callable[..., Any]:
    """``pc.<name>_<kind>_version``, e.g. ``pc.register_model_version``."""
    return getattr(pc, f"{name}_{kind}_version")  # type: ignore[no-any-return]


def op_s(pc: ProjectClient, name: str, kind: str) -> Callable[..., Any]:
    """``pc.<name>_<kind>_versions`` (the plural ones)."""
    return getattr(pc, f"{name}_{kind}_versions")  # type: ignore[no-any-return]


# register / get ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_register_and_get(tracked: Tracked, kind: str) -> None:
    with tracked.client() as pc:
        made = op(pc, "register", kind)(
            "rc1",
            description="candidate",
            tags=["prod"],
            content={"threshold": 0.5},
            run=tracked.run,
        )
        bare = op(pc, "register", kind)("empty")
        got = op(pc, "get", kind)("rc1")
        other_kind = "model" if kind == "artifact" else "artifact"
        with pytest.raises(VersionNotFound, match=f"{other_kind} version 'rc1' does not exist"):
            op(pc, "get", other_kind)("rc1")
    assert got == made
    assert (got.project, got.kind, got.name, got.run) == (PROJECT, kind, "rc1", tracked.run)
    assert (got.description, got.tags, got.content) == ("candidate", ["prod"], {"threshold": 0.5})
    assert sorted(got.artifacts) == ["ckpt", "model"]
    assert got.manifest == {
        "model/model.bin": {"digest": sha(MODEL), "size": len(MODEL)},
        "ckpt/config.json": {"digest": sha(CONFIG), "size": len(CONFIG)},
        "ckpt/layers/head.bin": {"digest": sha(HEAD), "size": len(HEAD)},
    }
    assert got.stage == "testing"
    assert (bare.run, bare.manifest, bare.artifacts) == (None, {}, [])


@pytest.mark.parametrize("kind", KINDS)
def test_register_errors_and_force(tracked: Tracked, kind: str) -> None:
    register = None
    with tracked.client() as pc:
        register = op(pc, "register", kind)
        register("v1", description="first", run=tracked.run, artifacts=["model"])
        with pytest.raises(VersionExists, match=f"{kind} version 'v1' already exists"):
            register("v1", description="second")
        assert op(pc, "get", kind)("v1").description == "first"
        replaced = register("v1", description="second", run=tracked.run, force=True)
        assert replaced.description == "second"
        assert sorted(replaced.artifacts) == ["ckpt", "model"]
        assert replaced.created_at <= replaced.updated_at
        for bad in ["has space", "a/b", "x" * 129, ".."]:
            with pytest.raises(InvalidName, match="version name"):
                register(bad)
        with pytest.raises(ArtifactNotFound, match="'nope'; it has: ckpt, model, train"):
            register("v2", run=tracked.run, artifacts=["nope"])
        with pytest.raises(RunNotFound):
            register("v3", run="0" * 32)
        assert [v.name for v in op_s(pc, "list", kind)()] == ["v1"]


# list -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_list_query_sort_limit_offset(tracked: Tracked, kind: str) -> None:
    with tracked.client() as pc:
        register = op(pc, "register", kind)
        register("v1", tags=["prod", "cnn"])
        register("v2", tags=["dev"])
        register("v3", tags=["prod"])
        register("rc1", tags=["prod-candidate"])
        op(pc, "stage", kind)("v2", "production")
        listing = op_s(pc, "list", kind)

        def names(**kwargs: Any) -> list[str]:
            return [v.name for v in listing(**kwargs)]

        assert names() == ["rc1", "v3", "v2", "v1"]  # newest first
        assert names(query="stage:production") == ["v2"]
        assert names(query="stage:~production", sort="name") == ["rc1", "v1", "v3"]
        assert names(query="tags:prod") == ["v3", "v1"]  # a whole tag, not a prefix
        assert names(query="tags:dev|cnn") == ["v2", "v1"]
        assert names(query="name:v1|v2") == ["v2", "v1"]
        assert names(query="name:v1|v3, tags:cnn") == ["v1"]
        assert names(query=f"run:{'0' * 32}") == []
        assert names(sort="name") == ["rc1", "v1", "v2", "v3"]
        assert names(sort="-name") == ["v3", "v2", "v1", "rc1"]
        assert names(sort="created_at") == ["v1", "v2", "v3", "rc1"]
        assert names(sort="-updated_at")[0] == "v2"
        assert names(limit=2) == ["rc1", "v3"]
        assert names(limit=2, offset=1) == ["v3", "v2"]
        assert names(limit=2, offset=3) == ["v1"]
        assert names(offset=10) == []
        with pytest.raises(InvalidQuery, match="unknown query field 'colour'; known fields"):
            listing(query="colour:red")
        with pytest.raises(InvalidQuery, match="malformed query term"):
            listing(query="stage")
        with pytest.raises(InvalidQuery, match="cannot sort by 'size'; sortable fields"):
            listing(sort="size")
        with pytest.raises(InvalidStage, match="valid stages"):
            listing(query="stage:live")


def test_listing_a_project_that_does_not_exist(tracked: Tracked) -> None:
    with tracked.client("nobody") as pc, pytest.raises(ProjectNotFound, match="'nobody'"):
        pc.list_artifact_versions()


# stages -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_stage_and_history(tracked: Tracked, kind: str) -> None:
    with tracked.client() as pc:
        op(pc, "register", kind)("v1")
        stage = op(pc, "stage", kind)
        staged = stage("v1", "staging", reason="Review", message="looks good")
        assert staged.stage == "staging"
        stage("v1", Stages.PRODUCTION)
        stage("v1", "Staging")  # any stage may follow any stage; case does not matter
        history = op(pc, "get", kind)("v1").stage_conditions
        stages = getattr(pc, f"get_{kind}_version_stages")("v1")
        with pytest.raises(
            InvalidStage, match="unknown stage 'live'; valid stages: testing, staging"
        ):
            stage("v1", "live")
        with pytest.raises(VersionNotFound):
            stage("v9", "staging")
    assert stages == history
    assert [c.type for c in stages] == ["testing", "staging", "production", "staging"]
    assert (stages[1].reason, stages[1].message, stages[1].status) == (
        "Review",
        "looks good",
        "True",
    )
    times = [c.last_transition_time for c in stages]
    assert times == sorted(times)


# patch / delete ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_patch_and_delete(tracked: Tracked, kind: str) -> None:
    with tracked.client() as pc:
        op(pc, "register", kind)("v1", description="old", tags=["a"], run=tracked.run)
        op(pc, "register", kind)("v2")
        patch = op(pc, "patch", kind)
        patched = patch("v1", {"description": "new", "tags": ["b"], "content": {"k": 1}})
        assert (patched.description, patched.tags, patched.content) == ("new", ["b"], {"k": 1})
        assert patched.manifest  # untouched fields stay
        renamed = patch("v1", {"name": "release-1"})
        assert renamed.name == "release-1"
        with pytest.raises(VersionNotFound):
            op(pc, "get", kind)("v1")
        with pytest.raises(VersionExists, match="'v2' already exists"):
            patch("release-1", {"name": "v2"})
        with pytest.raises(InvalidName):
            patch("release-1", {"name": "bad name"})
        with pytest.raises(InvalidQuery, match="cannot patch stage; patchable fields"):
            patch("release-1", {"stage": "production"})
        op(pc, "delete", kind)("release-1")
        with pytest.raises(VersionNotFound):
            op(pc, "get", kind)("release-1")
        with pytest.raises(VersionNotFound):
            op(pc, "delete", kind)("release-1")
        assert [v.name for v in op_s(pc, "list", kind)()] == ["v2"]


# pull -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_pull_writes_verified_files(tracked: Tracked, tmp_path: Path, kind: str) -> None:
    target = tmp_path / "pulled" / "here"
    with tracked.client() as pc:
        op(pc, "register", kind)("v1", run=tracked.run)
        moved: list[int] = []
        root = op(pc, "pull", kind)("v1", target, progress=moved.append)
        assert root == target
        assert (target / "model" / "model.bin").read_bytes() == MODEL
        assert (target / "ckpt" / "config.json").read_bytes() == CONFIG
        assert (target / "ckpt" / "layers" / "head.bin").read_bytes() == HEAD
        assert sum(moved) == len(MODEL) + len(CONFIG) + len(HEAD)
        record = json.loads((target / METADATA_FILE).read_text())
        assert (record["project"], record["kind"], record["name"]) == (PROJECT, kind, "v1")

        with pytest.raises(TargetNotEmpty, match="is not empty; pass force=True"):
            op(pc, "pull", kind)("v1", target)
        (target / "model" / "model.bin").write_bytes(b"local edit")
        op(pc, "pull", kind)("v1", target, force=True)
        assert (target / "model" / "model.bin").read_bytes() == MODEL

        bare = tmp_path / "metadata-only"
        op(pc, "pull", kind)("v1", bare, download_artifacts=False)
        assert [p.name for p in bare.iterdir()] == [METADATA_FILE]

        a_file = tmp_path / "a-file"
        a_file.write_text("x")
        with pytest.raises(TargetNotEmpty, match="not a folder"):
            op(pc, "pull", kind)("v1", a_file)
        with pytest.raises(VersionNotFound):
            op(pc, "pull", kind)("v9", tmp_path / "none")


def test_pull_names_the_file_whose_bytes_changed(tracked: Tracked, tmp_path: Path) -> None:
    with tracked.client() as pc:
        pc.register_model_version("v1", run=tracked.run)
        blob = Path(pc.backend.store.blob_path(sha(HEAD)))
        blob.write_bytes(b"rotten bytes")
        target = tmp_path / "pulled"
        with pytest.raises(DigestMismatch, match=r"ckpt/layers/head\.bin") as caught:
            pc.pull_model_version("v1", target)
    assert caught.value.expected == sha(HEAD)
    assert caught.value.actual == sha(b"rotten bytes")
    assert not (target / "ckpt" / "layers" / "head.bin").exists()
    leftovers = [p.name for p in target.rglob("*") if p.is_file() and p.name.endswith(".part")]
    assert leftovers == []


def test_pull_of_a_missing_blob_names_the_file(tracked: Tracked, tmp_path: Path) -> None:
    with tracked.client() as pc:
        pc.register_artifact_version("v1", run=tracked.run, artifacts=["model"])
        Path(pc.backend.store.blob_path(sha(MODEL))).unlink()
        with pytest.raises(ArtifactNotFound, match=r"model/model\.bin"):
            pc.pull_artifact_version("v1", tmp_path / "pulled")


# copy / transfer / lineage ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_copy(tracked: Tracked, tmp_path: Path, kind: str) -> None:
    with tracked.client() as pc:
        source = op(pc, "register", kind)("v1", description="d", tags=["t"], run=tracked.run)
        copy = op(pc, "copy", kind)
        same = copy("v1")
        assert same.name == "v2"
        assert (same.manifest, same.run, same.description, same.tags) == (
            source.manifest,
            source.run,
            "d",
            ["t"],
        )
        assert same.content["copied_from"] == f"{PROJECT}:v1"
        assert copy("v1", name="rc1").name == "rc1"
        with pytest.raises(VersionExists):
            copy("v1", name="rc1")
        assert copy("v2", name="rc1", force=True).content["copied_from"] == f"{PROJECT}:v2"
        other = copy("v1", to_project="org/other")
        assert (other.project, other.name) == ("org/other", "v1")
        with pytest.raises(VersionExists):
            copy("v1", to_project="org/other")
        assert copy("v1", to_project="org/other", name="v7").name == "v7"
        with pytest.raises(InvalidName):
            copy("v1", to_project="bad project")
    with tracked.client("org/other") as other_pc:
        op(other_pc, "pull", kind)("v1", tmp_path / "pulled")
        assert [v.name for v in op_s(other_pc, "list", kind)(sort="name")] == ["v1", "v7"]
    assert (tmp_path / "pulled" / "model" / "model.bin").read_bytes() == MODEL


@pytest.mark.parametrize("kind", KINDS)
def test_transfer(tracked: Tracked, kind: str) -> None:
    with tracked.client() as pc:
        op(pc, "register", kind)("v1", run=tracked.run)
        op(pc, "register", kind)("v2")
        op(pc, "stage", kind)("v1", "production")
        moved = op(pc, "transfer", kind)("v1", "org/elsewhere")
        assert (moved.project, moved.name, moved.stage) == ("org/elsewhere", "v1", "production")
        assert [c.type for c in moved.stage_conditions] == ["testing", "production"]
        with pytest.raises(VersionNotFound):
            op(pc, "get", kind)("v1")
        assert [v.name for v in op_s(pc, "list", kind)()] == ["v2"]
    with tracked.client("org/elsewhere") as there:
        op(there, "register", kind)("v2")
        with pytest.raises(VersionExists, match=f"'v2' already exists in '{PROJECT}'"):
            op(there, "transfer", kind)("v2", PROJECT)  # the target project has a v2
        assert op(there, "get", kind)("v1").manifest


@pytest.mark.parametrize("kind", KINDS)
def test_lineage(tracked: Tracked, kind: str) -> None:
    with tracked.client() as pc:
        op(pc, "register", kind)("v1", run=tracked.run, artifacts=["model"])
        op(pc, "register", kind)("v2", run=tracked.run)
        op(pc, "register", kind)("bare")
        lineage = getattr(pc, f"get_{kind}_version_lineage")
        one = [(r.name, r.is_input) for r in lineage("v1")]
        two = [(r.name, r.is_input) for r in lineage("v2")]
        assert lineage("bare") == []
        with pytest.raises(VersionNotFound):
            lineage("v9")
    assert one == [("train", True), ("model", False)]  # inputs + carried, not ckpt
    assert two == [("train", True), ("ckpt", False), ("model", False)]


# runs -------------------------------------------------------------------------------------


def test_run_client(tracked: Tracked) -> None:
    with tracking.init(project=PROJECT, tracking_uri=tracked.tracking_dir) as run:
        tracking.log_metrics(step=0, acc=0.9)
        tracking.evaluate_promotion(when="acc > 0.95")
        tracking.promote_to_model_version(when="acc > 0.8")
    with RunClient(tracked.run, tracking_uri=tracked.tracking_dir) as rc:
        stored = rc.get_run()
        metrics = rc.get_metrics()
        only = rc.get_metrics(names=["loss", "unknown"])
        lineage = rc.get_artifacts_lineage()
        assert rc.get_promotions() == []
    assert (stored.uuid, stored.project, stored.name, stored.status) == (
        tracked.run,
        PROJECT,
        "trainer",
        "succeeded",
    )
    assert stored.params == {"lr": 0.1}
    assert stored.started_at <= stored.ended_at  # type: ignore[operator]
    assert stored.environment["python"]
    assert {k: [(p.step, p.value) for p in v] for k, v in metrics.items()} == {
        "acc": [(0, 0.5), (1, 0.9)],
        "loss": [(0, 0.9), (1, 0.3)],
    }
    assert list(only) == ["loss"]
    assert [(r.name, r.is_input, r.kind) for r in lineage] == [
        ("train", True, "data"),
        ("ckpt", False, "dir"),
        ("model", False, "model"),
    ]
    with RunClient(run.uuid, tracking_uri=tracked.tracking_dir) as rc:
        made = rc.get_promotions()
    assert [(d.promoted, d.dry_run, d.version) for d in made] == [
        (False, True, None),
        (True, False, "v1"),
    ]
    with RunClient("f" * 32, tracking_uri=tracked.tracking_dir) as rc:
        with pytest.raises(RunNotFound, match="does not exist"):
            rc.get_run()
        with pytest.raises(RunNotFound):
            rc.get_metrics()


def test_list_runs(tracked: Tracked) -> None:
    folder = tracked.tracking_dir
    with tracking.init(project=PROJECT, name="b-run", tags=["baseline"], tracking_uri=folder):
        pass
    with (
        pytest.raises(RuntimeError),
        tracking.init(project=PROJECT, name="a-run", tracking_uri=folder),
    ):
        raise RuntimeError("crash")
    with tracking.init(project=PROJECT, name="c-run", tags=["x", "baseline"], tracking_uri=folder):
        tracking.promote_to_artifact_version()
    with tracking.init(project="org/other", name="elsewhere", tracking_uri=folder):
        pass
    with tracked.client() as pc:

        def names(**kwargs: Any) -> list[str | None]:
            return [r.name for r in pc.list_runs(**kwargs)]

        assert names() == ["c-run", "a-run", "b-run", "trainer"]  # newest first
        assert names(query="status:failed") == ["a-run"]
        assert names(query="status:~failed", sort="name") == ["b-run", "c-run", "trainer"]
        assert names(query="tags:baseline") == ["c-run", "b-run"]
        assert names(query="name:a-run|trainer") == ["a-run", "trainer"]
        assert names(query="is_promoted:true") == ["c-run"]
        assert names(query="is_promoted:false, tags:baseline") == ["b-run"]
        assert names(sort="name") == ["a-run", "b-run", "c-run", "trainer"]
        assert names(sort="-name", limit=2) == ["trainer", "c-run"]
        assert names(sort="name", limit=2, offset=1) == ["b-run", "c-run"]
        assert names(sort="started_at")[0] == "trainer"
        with pytest.raises(InvalidQuery, match="unknown query field 'owner'"):
            pc.list_runs(query="owner:me")
        with pytest.raises(InvalidQuery, match="cannot sort by 'acc'"):
            pc.list_runs(sort="acc")
