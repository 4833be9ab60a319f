"""Promotion: version numbering, conditions, better_than, stages, dry runs, manifests, errors."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ensign import Promotion, tracking
from ensign.client import ProjectClient, RunClient
from ensign.errors import (
    ArtifactNotFound,
    ConfigurationError,
    InvalidCondition,
    InvalidStage,
    UnknownMetric,
    VersionExists,
)
from ensign.promotion import as_promotion
from ensign.records import PromotionDecision
from ensign.tracking import Run

PROJECT = "org/digits"


@pytest.fixture(autouse=True)
def _no_run_left_open() -> Iterator[None]:
    yield
    run = tracking.get_run()
    if run is not None and not run.ended:
        run.end()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def start(tracking_dir: Path, **metrics: float | Sequence[float]) -> Run:
    """A run of PROJECT with the given metric histories (a number is a one-point history)."""
    run = tracking.init(project=PROJECT, tracking_uri=tracking_dir)
    for name, values in metrics.items():
        for value in values if isinstance(values, Sequence) else [values]:
            run.log_metric(name, value)
    return run


def decisions(run: Run, tracking_dir: Path) -> list[PromotionDecision]:
    with RunClient(run.uuid, tracking_uri=tracking_dir) as rc:
        return rc.get_promotions()


def client(tracking_dir: Path) -> ProjectClient:
    return ProjectClient(PROJECT, tracking_uri=tracking_dir)


# names ------------------------------------------------------------------------------------


def test_unnamed_promotions_take_the_next_number_per_kind(tracking_dir: Path) -> None:
    run = start(tracking_dir, acc=0.9)
    first = tracking.promote_to_artifact_version()
    second = tracking.promote_to_artifact_version()
    model = tracking.promote_to_model_version()
    named = tracking.promote_to_artifact_version(version="rc1")
    third = tracking.promote_to_artifact_version()
    tracking.end()
    assert first is not None
    assert second is not None
    assert third is not None
    assert (first.name, second.name, third.name) == ("v1", "v2", "v3")
    assert model is not None
    assert (model.kind, model.name) == ("model", "v1")
    assert named is not None
    assert (named.kind, named.name) == ("artifact", "rc1")
    assert first.run == run.uuid
    assert first.project == PROJECT
    assert first.stage == "testing"
    with client(tracking_dir) as pc:
        names = [v.name for v in pc.list_artifact_versions(sort="name")]
    assert names == ["rc1", "v1", "v2", "v3"]


def test_a_taken_name_needs_force(tracking_dir: Path) -> None:
    start(tracking_dir, acc=0.9)
    tracking.promote_to_artifact_version(version="rc1", description="first", content={"a": 1})
    with pytest.raises(VersionExists, match="'rc1' already exists"):
        tracking.promote_to_artifact_version(version="rc1")
    replaced = tracking.promote_to_artifact_version(
        version="rc1", description="second", content={"b": 2}, tags=["x"], force=True
    )
    tracking.end()
    assert replaced is not None
    assert (replaced.description, replaced.content, replaced.tags) == ("second", {"b": 2}, ["x"])
    with client(tracking_dir) as pc:
        assert [v.name for v in pc.list_artifact_versions()] == ["rc1"]


def test_promote_fields_are_stored(tracking_dir: Path) -> None:
    start(tracking_dir, acc=0.9)
    version = tracking.promote_to_model_version(
        description="the good one", tags=["prod", "cnn"], content={"threshold": 0.5}
    )
    tracking.end()
    assert version is not None
    with client(tracking_dir) as pc:
        stored = pc.get_model_version("v1")
    assert stored.description == "the good one"
    assert stored.tags == ["prod", "cnn"]
    assert stored.content == {"threshold": 0.5}


# conditions -------------------------------------------------------------------------------


def test_when_decides_and_every_decision_is_recorded(tracking_dir: Path) -> None:
    run = start(tracking_dir, acc=0.85, loss=0.2)
    refused = tracking.promote_to_artifact_version(when="acc >= 0.9 and loss < 0.3")
    assert refused is None
    assert not run.ended
    promoted = tracking.promote_to_artifact_version(when="acc >= 0.8 and loss < 0.3")
    tracking.end()
    assert promoted is not None
    assert promoted.name == "v1"
    history = decisions(run, tracking_dir)
    assert [(d.promoted, d.version, d.dry_run) for d in history] == [
        (False, None, False),
        (True, "v1", False),
    ]
    assert history[0].reasons == ["acc = 0.85 >= 0.9: false", "loss = 0.2 < 0.3: true"]
    assert history[1].reasons == ["acc = 0.85 >= 0.8: true", "loss = 0.2 < 0.3: true"]
    assert history[0].evaluated_at <= history[1].evaluated_at
    with client(tracking_dir) as pc:
        assert [v.name for v in pc.list_artifact_versions()] == ["v1"]


def test_a_refused_promotion_leaves_the_run_unpromoted(tracking_dir: Path) -> None:
    run = start(tracking_dir, acc=0.5)
    assert tracking.promote_to_model_version(when="acc > 0.9") is None
    tracking.end()
    with RunClient(run.uuid, tracking_uri=tracking_dir) as rc:
        assert rc.get_run().is_promoted is False
    with client(tracking_dir) as pc:
        assert pc.list_model_versions() == []


def test_run_is_promoted_after_a_promotion(tracking_dir: Path) -> None:
    run = start(tracking_dir, acc=0.95)
    tracking.promote_to_model_version(when="acc > 0.9")
    tracking.end()
    with RunClient(run.uuid, tracking_uri=tracking_dir) as rc:
        assert rc.get_run().is_promoted is True
    with client(tracking_dir) as pc:
        assert [r.uuid for r in pc.list_runs(query="is_promoted:true")] == [run.uuid]


def test_history_functions(tracking_dir: Path) -> None:
    run = start(tracking_dir, loss=[0.5, 0.2, 0.4])
    cases = [
        ("loss <= 0.2", "max", False, "loss = 0.4 <= 0.2: false"),
        ("min(loss) <= 0.2", "max", True, "min(loss) = 0.2 <= 0.2: true"),
        ("max(loss) >= 0.5", "max", True, "max(loss) = 0.5 >= 0.5: true"),
        ("best(loss) <= 0.2", "min", True, "best(loss) = 0.2 <= 0.2: true"),
        ("best(loss) <= 0.2", "max", False, "best(loss) = 0.5 <= 0.2: false"),
        ("last(loss) == 0.4", "max", True, "loss = 0.4 == 0.4: true"),
    ]
    for when, mode, expected, reason in cases:
        decision = tracking.evaluate_promotion(when=when, mode=mode)  # type: ignore[arg-type]
        assert (decision.promoted, decision.reasons) == (expected, [reason]), when
    version = tracking.promote_to_artifact_version(when="best(loss) < 0.25", mode="min")
    assert version is not None
    tracking.end()
    assert len(decisions(run, tracking_dir)) == len(cases) + 1


def test_nan_fails_every_comparison_but_is_skipped_by_min_and_max(tracking_dir: Path) -> None:
    start(tracking_dir, loss=[0.3, float("nan")])
    assert not tracking.evaluate_promotion(when="loss < 1").promoted
    assert tracking.evaluate_promotion(when="min(loss) < 1").promoted
    tracking.end()


# better_than ------------------------------------------------------------------------------


def test_better_than_with_no_holder_holds(tracking_dir: Path) -> None:
    run = start(tracking_dir, acc=0.5)
    version = tracking.promote_to_model_version(better_than="production", metric="acc")
    tracking.end()
    assert version is not None
    (decision,) = decisions(run, tracking_dir)
    assert decision.reasons == ["no model version holds production: comparison holds"]


def test_better_than_compares_with_the_producer_of_the_holder(tracking_dir: Path) -> None:
    start(tracking_dir, acc=0.8)
    holder = tracking.promote_to_model_version(stage="production")
    assert holder is not None
    assert holder.stage == "production"

    worse = start(tracking_dir, acc=0.79)
    assert tracking.promote_to_model_version(better_than="production", metric="acc") is None
    (refused,) = decisions(worse, tracking_dir)
    assert refused.reasons == ["acc = 0.79 > 0.8 of production holder v1: false"]

    close = start(tracking_dir, acc=0.85)
    result = tracking.promote_to_model_version(
        better_than="production", metric="acc", min_delta=0.1
    )
    assert result is None
    assert decisions(close, tracking_dir)[0].reasons == [
        "acc = 0.85 > 0.8 + 0.1 of production holder v1: false"
    ]

    better = start(tracking_dir, acc=0.95)
    promoted = tracking.promote_to_model_version(
        better_than="production", metric="acc", min_delta=0.1, stage="production"
    )
    assert promoted is not None
    assert promoted.name == "v2"
    assert decisions(better, tracking_dir)[0].reasons == [
        "acc = 0.95 > 0.8 + 0.1 of production holder v1: true"
    ]
    # v2 now holds production: the bar is its producer's 0.95
    start(tracking_dir, acc=0.9)
    assert tracking.promote_to_model_version(better_than="production", metric="acc") is None
    tracking.end()
    # artifact versions are another kind: no artifact holds production
    with client(tracking_dir) as pc:
        assert [v.name for v in pc.list_model_versions(query="stage:production", sort="name")] == [
            "v1",
            "v2",
        ]


def test_better_than_in_min_mode(tracking_dir: Path) -> None:
    start(tracking_dir, loss=0.3)
    tracking.promote_to_artifact_version(stage="staging")
    run = start(tracking_dir, loss=0.35)
    assert (
        tracking.promote_to_artifact_version(better_than="staging", metric="loss", mode="min")
        is None
    )
    assert decisions(run, tracking_dir)[0].reasons == [
        "loss = 0.35 < 0.3 of staging holder v1: false"
    ]
    run = start(tracking_dir, loss=0.25)
    version = tracking.promote_to_artifact_version(
        better_than="staging", metric="loss", mode="min", when="loss < 0.5"
    )
    assert version is not None
    assert decisions(run, tracking_dir)[0].reasons == [
        "loss = 0.25 < 0.5: true",
        "loss = 0.25 < 0.3 of staging holder v1: true",
    ]
    tracking.end()


def test_a_holder_moved_out_of_the_stage_no_longer_counts(tracking_dir: Path) -> None:
    start(tracking_dir, acc=0.99)
    tracking.promote_to_model_version(stage="production")
    with client(tracking_dir) as pc:
        pc.stage_model_version("v1", "disabled")
    start(tracking_dir, acc=0.5)
    assert tracking.promote_to_model_version(better_than="production", metric="acc") is not None
    tracking.end()


# stages, dry runs, manifests --------------------------------------------------------------


def test_stage_on_promote_is_recorded_with_the_reasons(tracking_dir: Path) -> None:
    start(tracking_dir, acc=0.95)
    version = tracking.promote_to_model_version(when="acc > 0.9", stage="staging")
    tracking.end()
    assert version is not None
    assert version.stage == "staging"
    (condition,) = version.stage_conditions
    assert (condition.type, condition.status, condition.reason) == ("staging", "True", "Promotion")
    assert condition.message == "acc = 0.95 > 0.9: true"


def test_evaluate_promotion_is_a_dry_run(tracking_dir: Path) -> None:
    run = start(tracking_dir, acc=0.95)
    yes = tracking.evaluate_promotion(when="acc > 0.9")
    no = run.evaluate_promotion(when="acc > 0.99", kind="model")
    tracking.end()
    assert (yes.promoted, yes.version, yes.dry_run) == (True, None, True)
    assert (no.promoted, no.reasons) == (False, ["acc = 0.95 > 0.99: false"])
    assert [(d.promoted, d.dry_run) for d in decisions(run, tracking_dir)] == [
        (True, True),
        (False, True),
    ]
    with client(tracking_dir) as pc:
        assert pc.list_artifact_versions() == []
        assert pc.list_model_versions() == []
    with RunClient(run.uuid, tracking_uri=tracking_dir) as rc:
        assert rc.get_run().is_promoted is False


def test_the_version_carries_the_output_refs(tmp_path: Path, tracking_dir: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"model")
    ckpt = tmp_path / "ckpt"
    (ckpt / "inner").mkdir(parents=True)
    (ckpt / "a.txt").write_bytes(b"a")
    (ckpt / "inner" / "b.txt").write_bytes(b"b")
    (tmp_path / "train.csv").write_bytes(b"x,y\n")
    start(tracking_dir, acc=0.9)
    tracking.log_model_ref(tmp_path / "model.bin", name="model")
    tracking.log_dir_ref(ckpt)
    tracking.log_file_ref(tmp_path / "train.csv", is_input=True)
    tracking.log_data_ref("inline", content={"k": 1})
    every = tracking.promote_to_model_version()
    only = tracking.promote_to_model_version(artifacts=["ckpt", "train.csv"])
    tracking.end()
    assert every is not None
    assert only is not None
    assert sorted(every.artifacts) == ["ckpt", "model"]  # outputs only
    assert every.manifest == {
        "model/model.bin": {"digest": sha(b"model"), "size": 5},
        "ckpt/a.txt": {"digest": sha(b"a"), "size": 1},
        "ckpt/inner/b.txt": {"digest": sha(b"b"), "size": 1},
    }
    assert only.artifacts == ["ckpt", "train.csv"]  # an input is carried when named
    assert sorted(only.manifest) == ["ckpt/a.txt", "ckpt/inner/b.txt", "train.csv/train.csv"]
    assert every.store_uri == (tracking_dir / "artifacts").as_uri()


def test_an_unknown_artifact_name_lists_the_names(tmp_path: Path, tracking_dir: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"model")
    run = start(tracking_dir, acc=0.9)
    tracking.log_model_ref(tmp_path / "model.bin")
    with pytest.raises(ArtifactNotFound, match=r"'weights'; it has: model\.bin"):
        tracking.promote_to_model_version(artifacts=["model.bin", "weights"])
    tracking.end()
    with client(tracking_dir) as pc:
        assert pc.list_model_versions() == []
    with RunClient(run.uuid, tracking_uri=tracking_dir) as rc:
        assert rc.get_run().is_promoted is False


# bad input --------------------------------------------------------------------------------


def test_a_syntax_error_shows_the_column(tracking_dir: Path) -> None:
    run = start(tracking_dir, acc=0.9)
    with pytest.raises(InvalidCondition, match="at column 8") as caught:
        tracking.promote_to_artifact_version(when="acc >= and loss < 1")
    assert caught.value.column == 8
    assert "acc >= and loss < 1\n         ^" in str(caught.value)
    with pytest.raises(InvalidCondition, match="did you mean '=='"):
        tracking.evaluate_promotion(when="acc = 0.9")
    tracking.end()
    assert decisions(run, tracking_dir) == []


def test_an_unknown_metric_is_named_with_the_logged_ones(tracking_dir: Path) -> None:
    run = start(tracking_dir, acc=0.9, loss=0.1)
    with pytest.raises(UnknownMetric, match="unknown metric 'val_acc'; the run logged: acc, loss"):
        tracking.promote_to_artifact_version(when="val_acc > 0.5")
    with pytest.raises(UnknownMetric, match="'f1'"):
        tracking.promote_to_artifact_version(better_than="production", metric="f1")
    with pytest.raises(UnknownMetric, match="'f1'") as caught:
        tracking.evaluate_promotion(when="best(f1) > 0")
    assert (caught.value.metric, caught.value.logged) == ("f1", ("acc", "loss"))
    tracking.end()
    assert decisions(run, tracking_dir) == []


def test_better_than_without_metric_and_other_bad_options(tracking_dir: Path) -> None:
    start(tracking_dir, acc=0.9)
    with pytest.raises(ConfigurationError, match="better_than needs metric"):
        tracking.promote_to_artifact_version(better_than="production")
    with pytest.raises(InvalidStage, match="valid stages: testing, staging, production, disabled"):
        tracking.promote_to_artifact_version(better_than="prod", metric="acc")
    with pytest.raises(InvalidStage, match="'live'"):
        tracking.promote_to_artifact_version(stage="live")
    with pytest.raises(ConfigurationError, match="mode must be 'max' or 'min'"):
        tracking.promote_to_artifact_version(when="acc > 0", mode="avg")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="min_delta must not be negative"):
        tracking.promote_to_artifact_version(better_than="staging", metric="acc", min_delta=-1)
    tracking.end()
    with client(tracking_dir) as pc:
        assert pc.list_artifact_versions() == []


# Promotion and its shorthand --------------------------------------------------------------


def test_a_string_is_shorthand_for_a_promotion() -> None:
    assert as_promotion("acc > 0.5") == Promotion(when="acc > 0.5")
    assert as_promotion(None) is None
    full = Promotion(when="acc > 0.5", stage="staging", version="rc1")
    assert as_promotion(full) is full
    with pytest.raises(ConfigurationError, match="not int"):
        as_promotion(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidCondition, match="column"):
        as_promotion("acc >")


def test_run_promote_takes_a_promotion(tracking_dir: Path) -> None:
    run = start(tracking_dir, acc=0.95)
    version = run.promote(
        as_promotion("acc > 0.9")  # type: ignore[arg-type]
    )
    named = run.promote(
        Promotion(
            when="acc > 0.9",
            stage="staging",
            version="rc1",
            description="from a Promotion",
            tags=["p"],
        ),
        kind="artifact",
    )
    refused = run.promote(Promotion(when="acc > 0.99"))
    tracking.end()
    assert version is not None
    assert (version.kind, version.name) == ("model", "v1")
    assert named is not None
    assert (named.kind, named.name, named.stage, named.description, named.tags) == (
        "artifact",
        "rc1",
        "staging",
        "from a Promotion",
        ["p"],
    )
    assert refused is None
