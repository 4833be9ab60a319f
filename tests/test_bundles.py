"""ensign.bundles: safe unpacking, config and goals parsing, measurements, evaluation.

Real data (scikit-learn's digits, breast cancer and diabetes sets), real tar files and real
subprocesses; nothing is mocked.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import math
import os
import pickle
import shlex
import stat
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics
from sklearn.datasets import load_breast_cancer

from ensign.bundles import (
    DEFAULT_MAX_BUNDLE_BYTES,
    KNOWN,
    Evaluation,
    Threshold,
    evaluate_archive,
    evaluate_bundle,
    load_config,
    load_dataset,
    load_goals,
    measure,
    unpack_bundle,
)
from ensign.errors import InvalidBundle, PayloadTooLarge, TargetNotEmpty

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bundle_helpers import (  # found through the path set just above
    LABEL,
    PREDICTIONS,
    SCORES,
    accuracy_goal,
    dataset_entry,
    digits_config,
    digits_frames,
    make_regression_bundle,
    make_shell_bundle,
    make_tar,
    read_column,
    write_bundle,
)

Digits = tuple[pd.DataFrame, pd.DataFrame, Any]


@pytest.fixture(scope="module")
def digits() -> Digits:
    """The digits frames (with predictions and scores) and the model, trained once."""
    return digits_frames()


def features_of(frame: pd.DataFrame) -> list[str]:
    return [column for column in frame.columns if column.startswith("pixel_")]


def write_digits(
    folder: Path,
    digits: Digits,
    goals: list[dict[str, Any]] | None,
    *,
    config: dict[str, Any] | None = None,
) -> Path:
    training, validation, _ = digits
    config = config or digits_config(features_of(training))
    return write_bundle(folder, config, {"training": training, "validation": validation}, goals)


def goal(
    measurement: str, operator: str, value: Any, *, training: bool = False, validation: bool = False
) -> dict[str, Any]:
    return {
        "name": f"{measurement} {operator} {value}",
        "type": "performance",
        "subtype": "metricThreshold",
        "thresholds": [
            {
                "insightName": "metrics",
                "measurement": measurement,
                "operator": operator,
                "value": value,
            }
        ],
        "usesValidationDataset": validation,
        "usesTrainingDataset": training,
    }


def snapshot(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


# --- unpacking --------------------------------------------------------------------------


@pytest.fixture
def bundle_dir(tmp_path: Path, digits: Digits) -> Path:
    return write_digits(tmp_path / "src" / "digits", digits, [accuracy_goal(0.5)])


def evil_tar(target: Path, bundle: Path, bad: tarfile.TarInfo) -> Path:
    """A valid SDK-style bundle tar with one bad entry added after every good one."""
    with tarfile.open(target, "w") as tar:
        tar.add(bundle, arcname=bundle.name)
        tar.addfile(bad, io.BytesIO(b"x" * bad.size) if bad.isfile() else None)
    return target


def info(
    name: str, kind: bytes = tarfile.REGTYPE, *, linkname: str = "", size: int = 0
) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = linkname
    member.size = size
    member.mode = 0o644
    return member


def test_unpacks_an_sdk_tar_to_its_top_folder_with_safe_modes(
    tmp_path: Path, bundle_dir: Path
) -> None:
    (bundle_dir / "sub").mkdir()
    (bundle_dir / "sub" / "run.sh").write_text("echo hi\n")
    os.chmod(bundle_dir / "sub" / "run.sh", 0o4777)  # setuid, world-writable: not kept
    archive = make_tar(bundle_dir, tmp_path / "bundle.tar")
    root = unpack_bundle(archive, tmp_path / "dest")
    assert root == tmp_path / "dest" / "digits"
    assert sorted(p.name for p in root.iterdir()) == [
        "openlayer.json",
        "sub",
        "tests.json",
        "training.csv",
        "validation.csv",
    ]
    assert (root / "training.csv").read_bytes() == (bundle_dir / "training.csv").read_bytes()
    assert stat.S_IMODE((root / "sub" / "run.sh").stat().st_mode) == 0o644
    assert stat.S_IMODE((root / "sub").stat().st_mode) == 0o755
    assert stat.S_IMODE(root.stat().st_mode) == 0o755


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz"])
def test_unpacks_compressed_tars(tmp_path: Path, bundle_dir: Path, mode: str) -> None:
    archive = tmp_path / "bundle.tar.x"
    with tarfile.open(archive, mode) as tar:
        tar.add(bundle_dir, arcname=bundle_dir.name)
    root = unpack_bundle(archive, tmp_path / "dest")
    assert (root / "openlayer.json").is_file()


def test_config_at_the_top_makes_the_destination_the_root(tmp_path: Path, bundle_dir: Path) -> None:
    archive = tmp_path / "flat.tar"
    with tarfile.open(archive, "w") as tar:  # as `tar -cf flat.tar -C digits .` makes it
        tar.add(bundle_dir, arcname=".")
    dest = tmp_path / "dest"
    dest.mkdir()  # an empty destination is fine
    assert unpack_bundle(archive, dest) == dest
    assert (dest / "tests.json").is_file()


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (info("/tmp/ensign-escaped.txt", size=5), "absolute"),
        (info("../x", size=5), "'..'"),
        (info("digits/../../x", size=5), "'..'"),
        (info("digits/../inside-but-dotted", size=5), "'..'"),
        (info("digits/link", tarfile.SYMTYPE, linkname="/etc/passwd"), "symbolic link"),
        (info("digits/up", tarfile.SYMTYPE, linkname="../../x"), "symbolic link"),
        (info("digits/hard", tarfile.LNKTYPE, linkname="/etc/passwd"), "hard link"),
        (info("digits/tty", tarfile.CHRTYPE), "character device"),
        (info("digits/disk", tarfile.BLKTYPE), "block device"),
        (info("digits/pipe", tarfile.FIFOTYPE), "FIFO"),
        (info("digits/openlayer.json", size=5), "twice"),
    ],
)
def test_unsafe_entries_are_refused_before_anything_is_written(
    tmp_path: Path, bundle_dir: Path, bad: tarfile.TarInfo, reason: str
) -> None:
    archive = evil_tar(tmp_path / "evil.tar", bundle_dir, bad)
    before = snapshot(tmp_path)
    dest = tmp_path / "work" / "dest"
    with pytest.raises(InvalidBundle) as caught:
        unpack_bundle(archive, dest)
    assert repr(bad.name) in str(caught.value)
    assert reason in str(caught.value)
    assert caught.value.where == bad.name
    assert snapshot(tmp_path) == before  # nothing inside dest, nothing next to it
    assert not dest.exists()
    assert not Path("/tmp/ensign-escaped.txt").exists()


def test_a_real_symlink_in_the_folder_is_refused(tmp_path: Path, bundle_dir: Path) -> None:
    (bundle_dir / "passwd").symlink_to("/etc/passwd")
    archive = make_tar(bundle_dir, tmp_path / "bundle.tar")
    with pytest.raises(InvalidBundle, match=r"'digits/passwd'.*symbolic link"):
        unpack_bundle(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_a_bundle_over_the_size_limit_is_refused(tmp_path: Path, bundle_dir: Path) -> None:
    archive = make_tar(bundle_dir, tmp_path / "bundle.tar")
    with pytest.raises(PayloadTooLarge, match="limit of 100000 bytes") as caught:
        unpack_bundle(archive, tmp_path / "dest", max_bytes=100_000)
    assert caught.value.limit == 100_000
    assert not (tmp_path / "dest").exists()
    assert DEFAULT_MAX_BUNDLE_BYTES == 512 * 1024 * 1024


def test_a_huge_declared_member_is_refused_from_its_header(tmp_path: Path) -> None:
    header = info("digits/huge.csv", size=10**12).tobuf(tarfile.GNU_FORMAT)
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(gzip.compress(header))  # a header, and none of its terabyte
    with pytest.raises(PayloadTooLarge, match=f"limit of {DEFAULT_MAX_BUNDLE_BYTES} bytes"):
        unpack_bundle(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_files_that_are_not_tars_are_refused(tmp_path: Path, bundle_dir: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a tar file\n" * 100)
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    whole = gzip.compress(make_tar(bundle_dir, tmp_path / "b.tar").read_bytes())
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    broken_bz2 = tmp_path / "broken.tar.bz2"
    broken_bz2.write_bytes(bz2.compress(b"x" * 1000)[:-10])
    for archive in (text, empty, truncated, broken_bz2):
        with pytest.raises(InvalidBundle, match="not a readable tar archive") as caught:
            unpack_bundle(archive, tmp_path / "dest")
        assert archive.name in str(caught.value)
        assert not (tmp_path / "dest").exists()


def test_a_bundle_without_openlayer_json_is_refused(tmp_path: Path, bundle_dir: Path) -> None:
    (bundle_dir / "openlayer.json").unlink()
    archive = make_tar(bundle_dir, tmp_path / "bundle.tar")
    with pytest.raises(InvalidBundle, match=r"no openlayer\.json") as caught:
        unpack_bundle(archive, tmp_path / "dest")
    assert caught.value.where == "openlayer.json"
    assert not (tmp_path / "dest").exists()


def test_a_non_empty_destination_is_refused(tmp_path: Path, bundle_dir: Path) -> None:
    archive = make_tar(bundle_dir, tmp_path / "bundle.tar")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep.txt").write_text("mine")
    with pytest.raises(TargetNotEmpty):
        unpack_bundle(archive, tmp_path / "dest")
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["keep.txt"]


# --- openlayer.json ---------------------------------------------------------------------


def write_config(folder: Path, config: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = config if isinstance(config, str) else json.dumps(config)
    (folder / "openlayer.json").write_text(text)
    return folder


def base_config() -> dict[str, Any]:
    return {
        "taskType": "tabular-classification",
        "model": {"modelType": "shell"},
        "datasets": [
            dataset_entry("train", "training", ["a"], {"labelColumnName": "y"}),
            dataset_entry("val", "validation", ["a"], {"outputColumnName": "pred"}),
        ],
        "testsPath": "tests.json",
        "somethingElse": {"ignored": True},
    }


def test_load_config_reads_the_fields_and_the_aliases(tmp_path: Path) -> None:
    config = base_config()
    config["goalsPath"] = config.pop("testsPath")
    config["datasets"][0].update(classNames=["no", "yes"], predictionScoresColumnName="s")
    parsed = load_config(write_config(tmp_path / "b", config))
    assert parsed.task_type == "tabular-classification"
    assert parsed.model is not None
    assert parsed.model.model_type == "shell"
    assert parsed.tests_path == "tests.json"
    assert parsed.root == tmp_path / "b"
    train, val = parsed.datasets
    assert (train.name, train.path, train.label, train.label_column) == (
        "train",
        "train.csv",
        "training",
        "y",
    )
    assert train.class_names == ("no", "yes")
    assert train.scores_column == "s"
    assert train.feature_names == ("a",)
    assert val.predictions_column == "pred"  # outputColumnName is an alias
    assert parsed.dataset_labelled("validation") == val


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    folder = write_config(tmp_path / "b", '{"taskType": "tabular-regression",\n  "datasets": [}')
    with pytest.raises(InvalidBundle, match=r"openlayer\.json: invalid JSON at line 2, column 16"):
        load_config(folder)


def test_a_wrong_task_type_lists_the_valid_ones(tmp_path: Path) -> None:
    config = {**base_config(), "taskType": "image-segmentation"}
    with pytest.raises(InvalidBundle) as caught:
        load_config(write_config(tmp_path / "b", config))
    message = str(caught.value)
    assert message.startswith("openlayer.json: taskType must be one of")
    assert "'image-segmentation'" in message
    assert "'tabular-regression'" in message
    assert caught.value.where == "taskType"


def test_a_bad_dataset_label_is_named_with_its_path(tmp_path: Path) -> None:
    config = base_config()
    config["datasets"][1]["label"] = "test"
    with pytest.raises(InvalidBundle) as caught:
        load_config(write_config(tmp_path / "b", config))
    assert str(caught.value) == (
        "openlayer.json: datasets[1].label must be 'training' or 'validation', got 'test'"
    )
    assert caught.value.where == "datasets[1].label"


def _set(path: str, value: Any) -> Any:
    def change(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = config
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is KeyError:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value

    return change


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (_set("datasets.0.path", "/etc/passwd"), "datasets[0].path"),
        (_set("datasets.0.path", "../outside.csv"), "datasets[0].path"),
        (_set("datasets.1.path", "data/../../x.csv"), "datasets[1].path"),
        (_set("datasets.1.path", ""), "datasets[1].path"),
        (_set("datasets.0.path", KeyError), "datasets[0].path"),
        (_set("datasets.1.name", KeyError), "datasets[1].name"),
        (_set("datasets.1.label", "training"), "datasets[1].label"),
        (_set("datasets.1.name", "train"), "datasets[1].name"),
        (_set("datasets.0.classNames", "yes,no"), "datasets[0].classNames"),
        (_set("datasets.0.featureNames", ["a", 2]), "datasets[0].featureNames[1]"),
        (_set("datasets.0.labelColumnName", 3), "datasets[0].labelColumnName"),
        (_set("datasets.1.predictionsColumnName", "other"), "datasets[1].outputColumnName"),
        (_set("datasets.0", "train.csv"), "datasets[0]"),
        (_set("datasets", {"train": "train.csv"}), "datasets"),
        (_set("model", "shell"), "model"),
        (_set("model.modelType", "docker"), "model.modelType"),
        (_set("model", {"modelType": "full"}), "model.batchCommand"),
        (_set("testsPath", "../tests.json"), "testsPath"),
        (_set("testsPath", "/tmp/tests.json"), "testsPath"),
    ],
)
def test_malformed_fields_are_named(tmp_path: Path, change: Any, where: str) -> None:
    config = base_config()
    change(config)
    with pytest.raises(InvalidBundle) as caught:
        load_config(write_config(tmp_path / "b", config))
    assert caught.value.where == where
    assert str(caught.value).startswith(f"openlayer.json: {where} ")


def test_a_config_that_is_not_an_object_or_missing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidBundle, match="must be a JSON object, got a list"):
        load_config(write_config(tmp_path / "b", [base_config()]))
    with pytest.raises(InvalidBundle, match=r"openlayer\.json: the file does not exist"):
        load_config(tmp_path / "nothing")


# --- the goals file ---------------------------------------------------------------------


def goals_bundle(folder: Path, goals: Any, task_type: str = "tabular-classification") -> Any:
    config = {**base_config(), "taskType": task_type}
    write_config(folder, config)
    text = goals if isinstance(goals, str) else json.dumps(goals)
    (folder / "tests.json").write_text(text)
    return load_config(folder)


def test_load_goals_parses_goals(tmp_path: Path) -> None:
    both = goal("f1", ">", 0.8, validation=True, training=True)
    parsed = load_goals(goals_bundle(tmp_path / "b", [accuracy_goal(0.9), both]))
    assert [g.name for g in parsed] == ["Accuracy above threshold", "f1 > 0.8"]
    assert parsed[0].thresholds == (Threshold("metrics", "accuracy", ">=", 0.9),)
    assert (parsed[0].uses_validation, parsed[0].uses_training) == (True, False)
    assert (parsed[1].uses_validation, parsed[1].uses_training) == (True, True)
    assert parsed[0].type == "performance"
    assert parsed[0].subtype == "metricThreshold"


def test_no_tests_path_means_no_goals(tmp_path: Path) -> None:
    config = base_config()
    del config["testsPath"]
    assert load_goals(load_config(write_config(tmp_path / "b", config))) == []


def test_a_missing_goals_file_is_named(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "b", base_config()))
    with pytest.raises(InvalidBundle, match=r"tests\.json: the goals file") as caught:
        load_goals(config)
    assert caught.value.where == "tests.json"


def _bad_goal(field: str, value: Any) -> list[dict[str, Any]]:
    goals = [accuracy_goal(0.5), accuracy_goal(0.6), accuracy_goal(0.7)]
    target: dict[str, Any] = goals[2]
    if field.startswith("thresholds."):
        target = target["thresholds"][0]
        field = field.removeprefix("thresholds.")
    if value is KeyError:
        del target[field]
    else:
        target[field] = value
    return goals


@pytest.mark.parametrize(
    ("goals", "where"),
    [
        (_bad_goal("thresholds.operator", "=~"), "[2].thresholds[0].operator"),
        (_bad_goal("thresholds.operator", KeyError), "[2].thresholds[0].operator"),
        (_bad_goal("thresholds.value", "high"), "[2].thresholds[0].value"),
        (_bad_goal("thresholds.measurement", KeyError), "[2].thresholds[0].measurement"),
        (_bad_goal("thresholds.insightName", 7), "[2].thresholds[0].insightName"),
        (_bad_goal("thresholds", []), "[2].thresholds"),
        (_bad_goal("thresholds", "accuracy >= 0.7"), "[2].thresholds"),
        (_bad_goal("name", KeyError), "[2].name"),
        (_bad_goal("type", None), "[2].type"),
        (_bad_goal("subtype", 3), "[2].subtype"),
        (_bad_goal("usesTrainingDataset", "yes"), "[2].usesTrainingDataset"),
        ([accuracy_goal(0.5), "accuracy >= 0.5"], "[1]"),
    ],
)
def test_malformed_goals_are_named(tmp_path: Path, goals: Any, where: str) -> None:
    with pytest.raises(InvalidBundle) as caught:
        load_goals(goals_bundle(tmp_path / "b", goals))
    assert caught.value.where == where
    assert str(caught.value).startswith(f"tests.json: {where} ")


def test_a_goals_file_that_is_not_a_list_or_not_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidBundle, match="must hold a JSON list of goals, got an object"):
        load_goals(goals_bundle(tmp_path / "a", {"tests": []}))
    with pytest.raises(InvalidBundle, match=r"tests\.json: invalid JSON at line 1, column 2"):
        load_goals(goals_bundle(tmp_path / "b", "[oops]"))


def test_an_unknown_measurement_is_named_with_the_known_ones(tmp_path: Path) -> None:
    goals = [accuracy_goal(0.5), goal("acuracy", ">", 0.5)]
    with pytest.raises(InvalidBundle) as caught:
        load_goals(goals_bundle(tmp_path / "b", goals))
    message = str(caught.value)
    assert "'acuracy'" in message
    assert caught.value.where == "[1].thresholds[0].measurement"
    for known in ("accuracy", "rocAuc", "mae", "duplicateRowCount", "nullRowRatio"):
        assert known in message
    assert set(KNOWN) >= {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "rocAuc",
        "logLoss",
        "mae",
        "mse",
        "rmse",
        "r2",
        "mape",
        "nullRowCount",
        "duplicateRowCount",
        "rowCount",
        "columnCount",
        "nullRowRatio",
        "duplicateRowRatio",
    }


def test_a_measurement_of_another_task_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidBundle, match=r"'mae' does not apply to task type 'tabular-clas"):
        load_goals(goals_bundle(tmp_path / "a", [goal("mae", "<", 1)]))
    with pytest.raises(InvalidBundle, match=r"'accuracy' does not apply .*'tabular-regression'"):
        load_goals(goals_bundle(tmp_path / "b", [accuracy_goal(0.5)], "tabular-regression"))


@pytest.mark.parametrize(
    ("measured", "operator", "value", "holds"),
    [
        (0.9, ">=", 0.9, True),
        (0.9, ">", 0.9, False),
        (0.8, "<", 0.9, True),
        (0.9, "<=", 0.9, True),
        (0.1 + 0.2, "==", 0.3, True),
        (3.0, "is", 3.0, True),
        (3.0, "!=", 3.0, False),
        (2.0, "!=", 3.0, True),
        (math.nan, "<", 1.0, False),
        (math.nan, "!=", 1.0, False),
        (math.nan, "is", math.nan, False),
    ],
)
def test_threshold_holds(measured: float, operator: str, value: float, holds: bool) -> None:
    assert Threshold(None, "accuracy", operator, value).holds(measured) is holds


# --- measurements -----------------------------------------------------------------------


def test_classification_measurements_match_scikit_learn(tmp_path: Path, digits: Digits) -> None:
    config = load_config(write_digits(tmp_path / "digits", digits, None))
    dataset = load_dataset(config, config.datasets[1])
    frame = pd.read_csv(tmp_path / "digits" / "validation.csv")
    y, p = frame[LABEL], frame[PREDICTIONS]
    scores = np.array([json.loads(cell) for cell in frame[SCORES]])
    expected = {
        "accuracy": metrics.accuracy_score(y, p),
        "precision": metrics.precision_score(y, p, average="macro"),
        "recall": metrics.recall_score(y, p, average="macro"),
        "f1": metrics.f1_score(y, p, average="macro"),
        "rocAuc": metrics.roc_auc_score(y, scores, multi_class="ovr"),
        "logLoss": metrics.log_loss(y, scores),
        "rowCount": len(frame),
        "columnCount": 64 + 3,
        "nullRowCount": 0,
        "duplicateRowRatio": 0.0,
    }
    for name, value in expected.items():
        assert measure(name, dataset, "tabular-classification") == pytest.approx(value), name


def test_binary_measurements_with_string_labels_and_a_score_per_row(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    x = StandardScaler().fit_transform(data.data)
    model = LogisticRegression(max_iter=500).fit(x, data.target)
    names = list(data.target_names)  # ["malignant", "benign"]: "benign" is the positive class
    frame = pd.DataFrame(
        {
            "diagnosis": [names[t] for t in data.target],
            "predicted": [names[t] for t in model.predict(x)],
            "p_benign": model.predict_proba(x)[:, 1],
        }
    )
    columns = {
        "labelColumnName": "diagnosis",
        "predictionsColumnName": "predicted",
        "predictionScoresColumnName": "p_benign",
        "classNames": names,
    }
    config_data = {
        "taskType": "tabular-classification",
        "datasets": [dataset_entry("validation", "validation", [], columns)],
    }
    folder = write_bundle(tmp_path / "cancer", config_data, {"validation": frame}, None)
    config = load_config(folder)
    dataset = load_dataset(config, config.datasets[0])
    y, p, s = data.target, model.predict(x), model.predict_proba(x)[:, 1]
    assert measure("precision", dataset, "tabular-classification") == pytest.approx(
        metrics.precision_score(y, p)
    )
    assert measure("recall", dataset, "tabular-classification") == pytest.approx(
        metrics.recall_score(y, p)
    )
    assert measure("rocAuc", dataset, "tabular-classification") == pytest.approx(
        metrics.roc_auc_score(y, s)
    )
    assert measure("logLoss", dataset, "tabular-classification") == pytest.approx(
        metrics.log_loss(y, s)
    )


def test_regression_goals_on_diabetes_match_scikit_learn(tmp_path: Path) -> None:
    goals = [
        goal("mae", "<", 60),
        goal("mse", "<", 4000),
        goal("rmse", "<", 60),
        goal("r2", ">", 0.3),
        goal("mape", "<", 1.0),
        goal("r2", ">", 0.9, training=True),
    ]
    folder = make_regression_bundle(tmp_path / "diabetes", goals)
    evaluation = evaluate_bundle(folder)
    frame = pd.read_csv(folder / "validation.csv")
    y, p = frame["target"], frame["prediction"]
    expected = [
        metrics.mean_absolute_error(y, p),
        metrics.mean_squared_error(y, p),
        math.sqrt(metrics.mean_squared_error(y, p)),
        metrics.r2_score(y, p),
        metrics.mean_absolute_percentage_error(y, p),
    ]
    assert [r.value for r in evaluation.results[:5]] == pytest.approx(expected)
    assert [r.status for r in evaluation.results] == ["passing"] * 5 + ["failing"]
    assert evaluation.results[5].dataset == "training"
    assert (evaluation.status, evaluation.passing, evaluation.failing, evaluation.total) == (
        "completed",
        5,
        1,
        6,
    )


def test_data_checks_count_empty_and_duplicate_rows(tmp_path: Path, digits: Digits) -> None:
    training, validation, _ = digits
    messy = pd.concat([validation, validation.iloc[:3]], ignore_index=True)
    messy.loc[10, "pixel_5"] = np.nan
    messy.loc[20, "pixel_7"] = np.nan
    folder = write_digits(tmp_path / "d", (training, messy, None), None)
    config = load_config(folder)
    dataset = load_dataset(config, config.datasets[1])
    rows = len(validation) + 3
    found = {
        name: measure(name, dataset, "tabular-classification")
        for name in (
            "nullRowCount",
            "duplicateRowCount",
            "rowCount",
            "columnCount",
            "nullRowRatio",
            "duplicateRowRatio",
        )
    }
    assert found == {
        "nullRowCount": 2,
        "duplicateRowCount": 3,
        "rowCount": rows,
        "columnCount": 67,
        "nullRowRatio": pytest.approx(2 / rows),
        "duplicateRowRatio": pytest.approx(3 / rows),
    }


def test_a_missing_dataset_file_is_named(tmp_path: Path, digits: Digits) -> None:
    folder = write_digits(tmp_path / "digits", digits, [accuracy_goal(0.5)])
    (folder / "validation.csv").unlink()
    with pytest.raises(InvalidBundle, match=r"dataset 'validation' .*'validation\.csv' does not"):
        evaluate_bundle(folder)
    archive = make_tar(folder, tmp_path / "bundle.tar")
    evaluation = evaluate_archive(archive, tmp_path / "work")
    assert evaluation.status == "failed"
    assert "validation.csv" in evaluation.status_message


@pytest.mark.parametrize(
    ("field", "column"),
    [
        ("labelColumnName", "digit"),
        ("predictionScoresColumnName", "proba"),
        ("featureNames", ["pixel_0", "pixel_99"]),
    ],
)
def test_a_configured_column_missing_from_the_csv_is_named(
    tmp_path: Path, digits: Digits, field: str, column: Any
) -> None:
    config = digits_config(features_of(digits[0]))
    config["datasets"][0][field] = column
    folder = write_digits(tmp_path / "digits", digits, [accuracy_goal(0.5)], config=config)
    with pytest.raises(InvalidBundle) as caught:
        evaluate_bundle(folder)
    missing = column[-1] if isinstance(column, list) else column
    message = str(caught.value)
    assert f"column {missing!r}" in message
    assert "dataset 'training'" in message
    assert "its columns are: pixel_0, pixel_1" in message
    assert "label, predictions, scores" in message
    assert caught.value.where == missing


def test_a_measurement_needing_an_unset_column(tmp_path: Path, digits: Digits) -> None:
    config = digits_config(features_of(digits[0]))
    for entry in config["datasets"]:
        del entry["predictionScoresColumnName"]
    goals = [accuracy_goal(0.5), goal("rocAuc", ">", 0.9)]
    folder = write_digits(tmp_path / "digits", digits, goals, config=config)
    loaded = load_config(folder)
    with pytest.raises(InvalidBundle, match="'rocAuc' needs predictionScoresColumnName") as caught:
        measure("rocAuc", load_dataset(loaded, loaded.datasets[1]), loaded.task_type)
    assert caught.value.where == "predictionScoresColumnName"
    evaluation = evaluate_bundle(folder)
    assert evaluation.status == "failed"
    assert [r.status for r in evaluation.results] == ["passing", "error"]
    assert "needs predictionScoresColumnName" in (evaluation.results[1].message or "")
    assert evaluation.status_message.startswith("1 of 2 goals passing; 1 could not be measured")


def test_measure_refuses_unknown_names_and_empty_cells(tmp_path: Path, digits: Digits) -> None:
    training, validation, _ = digits
    holes = validation.copy()
    holes.loc[[3, 4], LABEL] = np.nan
    config = load_config(write_digits(tmp_path / "d", (training, holes, None), None))
    dataset = load_dataset(config, config.datasets[1])
    with pytest.raises(InvalidBundle, match=r"unknown measurement 'auc'; known .*rocAuc"):
        measure("auc", dataset, config.task_type)
    with pytest.raises(InvalidBundle, match=r"column 'label' has 2 empty cell"):
        measure("accuracy", dataset, config.task_type)


# --- evaluation -------------------------------------------------------------------------


def test_a_passing_shell_bundle(tmp_path: Path) -> None:
    folder = make_shell_bundle(tmp_path / "digits")
    archive = make_tar(folder, tmp_path / "bundle.tar")
    evaluation = evaluate_archive(archive, tmp_path / "work")
    assert (tmp_path / "work" / "bundle" / "digits" / "openlayer.json").is_file()
    assert evaluation.status == "completed", evaluation.status_message
    assert evaluation.status_message == "1 of 1 goals passing"
    assert (evaluation.passing, evaluation.failing, evaluation.total) == (1, 0, 1)
    result = evaluation.results[0]
    assert (result.status, result.measurement, result.dataset) == (
        "passing",
        "accuracy",
        "validation",
    )
    data = evaluation.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["passingGoalCount"] == 1
    assert data["totalGoalCount"] == 1
    assert data["results"][0]["threshold"] == 0.5


def test_a_failing_goal_is_counted_and_measured_like_scikit_learn(
    tmp_path: Path, digits: Digits
) -> None:
    goals = [
        accuracy_goal(0.5, name="reasonable"),
        accuracy_goal(0.999, name="perfectionist"),
        goal("rowCount", ">", 100),
        goal("duplicateRowCount", "==", 0),
    ]
    folder = write_digits(tmp_path / "digits", digits, goals)
    evaluation = evaluate_bundle(folder)
    assert evaluation.status == "completed"
    assert evaluation.status_message == "3 of 4 goals passing"
    assert (evaluation.passing, evaluation.failing, evaluation.total) == (3, 1, 4)
    failing = evaluation.results[1]
    assert (failing.name, failing.status, failing.threshold) == ("perfectionist", "failing", 0.999)
    y = read_column(folder / "validation.csv", LABEL)
    p = read_column(folder / "validation.csv", PREDICTIONS)
    assert failing.value == metrics.accuracy_score(y, p)
    assert "does not hold" in (failing.message or "")
    assert evaluation.to_dict()["failingGoalCount"] == 1


def test_the_datasets_a_goal_is_measured_on(tmp_path: Path, digits: Digits) -> None:
    training, validation, _ = digits
    train_acc = metrics.accuracy_score(training[LABEL], training[PREDICTIONS])
    val_acc = metrics.accuracy_score(validation[LABEL], validation[PREDICTIONS])
    between = (train_acc + val_acc) / 2
    assert val_acc < between < train_acc
    goals = [
        goal("accuracy", ">", between, training=True),
        goal("accuracy", ">", between, validation=True),
        goal("accuracy", ">", between, training=True, validation=True),
        goal("accuracy", ">", between),
    ]
    results = evaluate_bundle(write_digits(tmp_path / "d", digits, goals)).results
    assert [(r.status, r.dataset) for r in results] == [
        ("passing", "training"),
        ("failing", "validation"),
        ("failing", "validation"),
        ("failing", "validation"),
    ]
    assert results[0].value == pytest.approx(train_acc)
    assert "on 'validation'" in (results[2].message or "")
    assert "on 'training'" in (results[2].message or "")


def test_a_goal_on_a_dataset_the_bundle_lacks(tmp_path: Path, digits: Digits) -> None:
    config = digits_config(features_of(digits[0]))
    del config["datasets"][0]
    goals = [goal("accuracy", ">", 0.5, training=True), goal("accuracy", ">", 0.5)]
    evaluation = evaluate_bundle(write_digits(tmp_path / "d", digits, goals, config=config))
    assert evaluation.status == "failed"
    assert [r.status for r in evaluation.results] == ["error", "passing"]
    assert "needs a dataset labelled 'training'" in evaluation.status_message


def test_a_goal_without_flags_needs_some_dataset(tmp_path: Path, digits: Digits) -> None:
    config = {**digits_config(features_of(digits[0])), "datasets": []}
    evaluation = evaluate_bundle(
        write_digits(tmp_path / "d", digits, [goal("rowCount", ">", 0)], config=config)
    )
    assert evaluation.status == "failed"
    assert "no validation or training dataset" in (evaluation.results[0].message or "")
    json.dumps(evaluation.to_dict(), allow_nan=False)


def test_a_bad_archive_gives_a_failed_evaluation(tmp_path: Path, bundle_dir: Path) -> None:
    archive = evil_tar(tmp_path / "evil.tar", bundle_dir, info("../../etc/cron.d/x", size=1))
    evaluation = evaluate_archive(archive, tmp_path / "work")
    assert evaluation == Evaluation("failed", evaluation.status_message, 0, 0, 0, ())
    assert "'../../etc/cron.d/x'" in evaluation.status_message
    too_big = evaluate_archive(
        make_tar(bundle_dir, tmp_path / "b.tar"), tmp_path / "w2", max_bytes=10
    )
    assert too_big.status == "failed"
    assert "limit of 10 bytes" in too_big.status_message
    bad_goals = bundle_dir / "tests.json"
    bad_goals.write_text(json.dumps([goal("acuracy", ">", 1)]))
    typo = evaluate_archive(make_tar(bundle_dir, tmp_path / "c.tar"), tmp_path / "w3")
    assert typo.status == "failed"
    assert "'acuracy'" in typo.status_message


# --- full models: batchCommand ----------------------------------------------------------


PREDICT = """\
import json, pickle
import pandas as pd

model = pickle.loads(open("model.pkl", "rb").read())
for name in ("training", "validation"):
    frame = pd.read_csv(f"{name}.csv")
    x = frame[[c for c in frame.columns if c.startswith("pixel_")]].to_numpy()
    frame["predictions"] = model.predict(x)
    frame["scores"] = [json.dumps(row.tolist()) for row in model.predict_proba(x)]
    frame.to_csv(f"{name}.csv", index=False)
"""


def full_bundle(folder: Path, digits: Digits, command: str, *, predictions: bool) -> Path:
    training, validation, model = digits
    if not predictions:
        training = training.drop(columns=[PREDICTIONS, SCORES])
        validation = validation.drop(columns=[PREDICTIONS, SCORES])
    model_config = {"modelType": "full", "batchCommand": command}
    config = digits_config(features_of(training), model=model_config)
    goals = [accuracy_goal(0.9), goal("rocAuc", ">", 0.95)]
    write_digits(folder, (training, validation, None), goals, config=config)
    (folder / "model.pkl").write_bytes(pickle.dumps(model))
    (folder / "predict.py").write_text(PREDICT)
    return folder


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"  # killed; waiting for a reaper


def test_a_full_model_is_refused_without_allow_run_scripts(tmp_path: Path, digits: Digits) -> None:
    folder = full_bundle(tmp_path / "d", digits, "touch ran", predictions=True)
    evaluation = evaluate_bundle(folder)
    assert evaluation.status == "failed"
    assert "does not allow run scripts" in evaluation.status_message
    assert "--allow-run-scripts" in evaluation.status_message
    assert not (folder / "ran").exists()


def test_a_full_model_whose_command_writes_predictions_passes(
    tmp_path: Path, digits: Digits
) -> None:
    command = f"{shlex.quote(sys.executable)} predict.py"
    folder = full_bundle(tmp_path / "d", digits, command, predictions=False)
    evaluation = evaluate_bundle(folder, allow_run_scripts=True, time_limit=60)
    assert evaluation.status == "completed", evaluation.status_message
    assert (evaluation.passing, evaluation.total) == (2, 2)
    assert "predictions" in pd.read_csv(folder / "validation.csv").columns


def test_a_hanging_command_is_killed_with_its_whole_group(tmp_path: Path, digits: Digits) -> None:
    folder = full_bundle(
        tmp_path / "d", digits, "sleep 30 & echo $! > sleep.pid; wait", predictions=True
    )
    started = time.monotonic()
    evaluation = evaluate_bundle(folder, allow_run_scripts=True, time_limit=1)
    assert time.monotonic() - started < 5
    assert evaluation.status == "failed"
    assert "killed after 1 seconds" in evaluation.status_message
    pid = int((folder / "sleep.pid").read_text())
    deadline = time.monotonic() + 3
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(pid)


def test_what_a_finished_command_leaves_running_is_killed(tmp_path: Path, digits: Digits) -> None:
    folder = full_bundle(
        tmp_path / "d", digits, "sleep 30 & echo $! > straggler.pid", predictions=True
    )
    started = time.monotonic()
    evaluation = evaluate_bundle(folder, allow_run_scripts=True, time_limit=20)
    assert time.monotonic() - started < 5
    assert evaluation.status == "completed", evaluation.status_message
    pid = int((folder / "straggler.pid").read_text())
    deadline = time.monotonic() + 3
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(pid)


def test_a_failing_command_reports_its_exit_code_and_stderr(tmp_path: Path, digits: Digits) -> None:
    command = "echo to-stdout; for i in $(seq 1 30); do echo line $i >&2; done; exit 3"
    folder = full_bundle(tmp_path / "d", digits, command, predictions=True)
    evaluation = evaluate_bundle(folder, allow_run_scripts=True, time_limit=20)
    assert evaluation.status == "failed"
    assert "exited with code 3" in evaluation.status_message
    stderr = evaluation.status_message.split("stderr ends with:\n")[1]
    assert stderr == "\n".join(f"line {i}" for i in range(21, 31))  # the last ten lines


def test_a_shell_model_command_is_never_run(tmp_path: Path, digits: Digits) -> None:
    config = digits_config(
        features_of(digits[0]), model={"modelType": "shell", "batchCommand": "touch ran"}
    )
    folder = write_digits(tmp_path / "d", digits, [accuracy_goal(0.5)], config=config)
    assert evaluate_bundle(folder, allow_run_scripts=True).status == "completed"
    assert not (folder / "ran").exists()


def test_a_pushed_command_does_not_see_the_servers_secrets(
    tmp_path: Path, digits: Digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENSIGN_TOKEN", "ens_secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("PGPASSWORD", "pg-secret")
    monkeypatch.setenv("ENSIGN_HARMLESS_LOOKING", "still-hidden")
    folder = full_bundle(tmp_path / "d", digits, "env > seen.txt", predictions=True)
    evaluation = evaluate_bundle(folder, allow_run_scripts=True, time_limit=20)
    assert evaluation.status == "completed", evaluation.status_message
    seen = (folder / "seen.txt").read_text()
    for secret in ("ens_secret", "aws-secret", "pg-secret", "still-hidden"):
        assert secret not in seen
    assert "PATH=" in seen  # the rest of the environment is kept
