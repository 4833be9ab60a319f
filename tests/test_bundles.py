"""ensign.bundles: measurements with scikit-learn, evaluation and batch commands.

Real data (scikit-learn's digits, breast cancer and diabetes sets) and real subprocesses;
nothing is mocked.
"""

from __future__ import annotations

import json
import math
import pickle
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics
from sklearn.datasets import load_breast_cancer

from bundle_helpers import (
    LABEL,
    PREDICTIONS,
    SCORES,
    Digits,
    accuracy_goal,
    dataset_entry,
    digits_config,
    evil_tar,
    features_of,
    goal,
    info,
    make_regression_bundle,
    make_shell_bundle,
    make_tar,
    read_column,
    write_bundle,
    write_digits,
)
from ensign.bundles import (
    Evaluation,
    evaluate_archive,
    evaluate_bundle,
    load_config,
    load_dataset,
    measure,
)
from ensign.errors import InvalidBundle

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
