"""Builders of real bundles for the bundle and push tests.

``make_shell_bundle`` trains a small scikit-learn model on the digits data set and writes a
shell-model tabular-classification bundle (predictions and scores already in the CSVs);
``make_tar`` packs a bundle folder the way the openlayer SDK does.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes, load_digits
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split

LABEL = "label"
PREDICTIONS = "predictions"
SCORES = "scores"
DIGIT_CLASSES = [str(digit) for digit in range(10)]


def accuracy_goal(threshold: float, *, name: str = "Accuracy above threshold") -> dict[str, Any]:
    """A goal (as in tests.json) that accuracy on the validation set is >= threshold."""
    return {
        "name": name,
        "type": "performance",
        "subtype": "metricThreshold",
        "thresholds": [
            {
                "insightName": "metrics",
                "measurement": "accuracy",
                "operator": ">=",
                "value": threshold,
            }
        ],
        "usesValidationDataset": True,
        "usesTrainingDataset": False,
    }


def dataset_entry(
    name: str, label: str, features: list[str], columns: dict[str, Any]
) -> dict[str, Any]:
    """One ``datasets`` entry of openlayer.json for a CSV named ``{name}.csv``."""
    return {
        "name": name,
        "path": f"{name}.csv",
        "label": label,
        "featureNames": features,
        **columns,
    }


def digits_frames(*, with_predictions: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """Train a LogisticRegression on digits; return (training, validation, model)."""
    data = load_digits()
    features = [f"pixel_{i}" for i in range(data.data.shape[1])]
    x = data.data / 16.0
    x_train, x_val, y_train, y_val = train_test_split(
        x, data.target, test_size=0.3, random_state=0, stratify=data.target
    )
    model = LogisticRegression(max_iter=500)
    model.fit(x_train, y_train)
    frames = []
    for xs, ys in ((x_train, y_train), (x_val, y_val)):
        frame = pd.DataFrame(xs, columns=features)
        frame[LABEL] = ys
        if with_predictions:
            frame[PREDICTIONS] = model.predict(xs)
            frame[SCORES] = [json.dumps(row.tolist()) for row in model.predict_proba(xs)]
        frames.append(frame)
    return frames[0], frames[1], model


def write_bundle(
    folder: Path,
    config: dict[str, Any],
    frames: dict[str, pd.DataFrame],
    goals: list[dict[str, Any]] | None,
) -> Path:
    """Write openlayer.json, the CSVs (``{name}.csv``) and tests.json (when goals is not None)."""
    folder.mkdir(parents=True, exist_ok=True)
    if goals is not None:
        config = {**config, "testsPath": "tests.json"}
        (folder / "tests.json").write_text(json.dumps(goals, indent=2), encoding="utf-8")
    (folder / "openlayer.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    for name, frame in frames.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def digits_config(features: list[str], *, model: dict[str, Any] | None = None) -> dict[str, Any]:
    """openlayer.json of the digits bundle (a shell model unless ``model`` says otherwise)."""
    columns = {
        "labelColumnName": LABEL,
        "predictionsColumnName": PREDICTIONS,
        "predictionScoresColumnName": SCORES,
        "classNames": DIGIT_CLASSES,
    }
    return {
        "projectName": "digits",  # one of the many fields ensign ignores
        "taskType": "tabular-classification",
        "model": model or {"modelType": "shell"},
        "datasets": [
            dataset_entry("training", "training", features, columns),
            dataset_entry("validation", "validation", features, columns),
        ],
    }


def make_shell_bundle(
    folder: Path, *, goals: list[dict[str, Any]] | None = None, accuracy_threshold: float = 0.5
) -> Path:
    """Write a valid, passing shell-model tabular-classification bundle built from digits.

    Args:
        folder: The bundle folder to write (created).
        goals: The goals file's content; by default one goal: validation accuracy >=
            ``accuracy_threshold``.
        accuracy_threshold: The default goal's threshold (the model scores about 0.97).

    Returns:
        ``folder``.
    """
    training, validation, _ = digits_frames()
    features = [c for c in training.columns if c.startswith("pixel_")]
    if goals is None:
        goals = [accuracy_goal(accuracy_threshold)]
    frames = {"training": training, "validation": validation}
    return write_bundle(folder, digits_config(features), frames, goals)


def make_regression_bundle(folder: Path, goals: list[dict[str, Any]]) -> Path:
    """Write a shell-model tabular-regression bundle built from the diabetes data set."""
    data = load_diabetes()
    features = list(data.feature_names)
    x_train, x_val, y_train, y_val = train_test_split(
        data.data, data.target, test_size=0.3, random_state=0
    )
    model = LinearRegression().fit(x_train, y_train)
    frames = {}
    for name, xs, ys in (("training", x_train, y_train), ("validation", x_val, y_val)):
        frame = pd.DataFrame(xs, columns=features)
        frame["target"] = ys
        frame["prediction"] = model.predict(xs)
        frames[name] = frame
    columns = {"labelColumnName": "target", "predictionsColumnName": "prediction"}
    config = {
        "taskType": "tabular-regression",
        "model": {"modelType": "shell"},
        "datasets": [
            dataset_entry("training", "training", features, columns),
            dataset_entry("validation", "validation", features, columns),
        ],
    }
    return write_bundle(folder, config, frames, goals)


def make_tar(folder: Path, target: Path) -> Path:
    """Tar a bundle folder as the openlayer SDK does; return ``target``."""
    with tarfile.open(target, "w") as tar:
        tar.add(folder, arcname=folder.name)
    return target


def read_column(path: Path, column: str) -> np.ndarray:
    """Read one column of a CSV with the csv module (independent of the code under test)."""
    with path.open(newline="", encoding="utf-8") as handle:
        return np.asarray([row[column] for row in csv.DictReader(handle)])


# --- shared by the bundle tests ----------------------------------------------------------

Digits = tuple[pd.DataFrame, pd.DataFrame, Any]


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
