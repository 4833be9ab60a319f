"""ensign.bundles: openlayer.json and the goals file, every malformed field named."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bundle_helpers import (
    accuracy_goal,
    dataset_entry,
    goal,
)
from ensign.bundles import (
    KNOWN,
    Threshold,
    load_config,
    load_goals,
)
from ensign.errors import InvalidBundle

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
