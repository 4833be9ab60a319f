"""Parse a bundle's ``openlayer.json``.

Only the fields ensign uses are read; unknown fields are ignored (the openlayer format has
many more). Every malformed field raises :class:`~ensign.errors.InvalidBundle` whose message
starts with ``openlayer.json:`` and names the field by its path (``datasets[1].label``),
which is also the error's ``where``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ensign.bundles.unpack import CONFIG_NAME
from ensign.errors import InvalidBundle

__all__ = [
    "DATASET_LABELS",
    "MODEL_TYPES",
    "TASK_TYPES",
    "BundleConfig",
    "DatasetConfig",
    "ModelConfig",
    "load_config",
    "read_json",
    "relative_path",
]

TASK_TYPES = ("tabular-classification", "tabular-regression", "text-classification")
"""The task types a bundle may declare as ``taskType``."""

MODEL_TYPES = ("shell", "full")
"""``shell``: predictions are already in the datasets; ``full``: a ``batchCommand`` makes them."""

DATASET_LABELS = ("training", "validation")
"""The labels a dataset may carry; each label is used by at most one dataset."""


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset of a bundle: a CSV file and the meaning of its columns.

    Attributes:
        name: The dataset's name, unique within the bundle.
        path: The CSV file, relative to the bundle root.
        label: ``training`` or ``validation``.
        label_column: The column holding the ground truth (``labelColumnName``).
        predictions_column: The column holding the model's predictions
            (``predictionsColumnName``, or its alias ``outputColumnName``).
        scores_column: The column holding prediction scores (``predictionScoresColumnName``):
            a number per row (the positive class) or a JSON list per row (one per class).
        class_names: The class names, in the order of the scores (``classNames``).
        feature_names: The feature columns (``featureNames``).
        text_column: The column holding the text of a text-classification task.
    """

    name: str
    path: str
    label: str
    label_column: str | None = None
    predictions_column: str | None = None
    scores_column: str | None = None
    class_names: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()
    text_column: str | None = None


@dataclass(frozen=True)
class ModelConfig:
    """The bundle's model.

    Attributes:
        model_type: ``shell`` (the datasets already hold predictions) or ``full`` (run
            ``batch_command`` to write them).
        batch_command: The shell command that writes predictions; required for ``full``.
    """

    model_type: str
    batch_command: str | None = None


@dataclass(frozen=True)
class BundleConfig:
    """A parsed ``openlayer.json``.

    Attributes:
        task_type: One of :data:`TASK_TYPES`.
        model: The model, or ``None`` when the config names none (treated as ``shell``).
        datasets: The datasets, in config order.
        tests_path: The goals file relative to the root (``testsPath`` or ``goalsPath``).
        root: The bundle folder the config was read from.
    """

    task_type: str
    model: ModelConfig | None
    datasets: tuple[DatasetConfig, ...]
    tests_path: str | None
    root: Path

    def dataset_labelled(self, label: str) -> DatasetConfig | None:
        """Return the dataset carrying ``label`` (``training`` or ``validation``), if any."""
        for dataset in self.datasets:
            if dataset.label == label:
                return dataset
        return None

    def path_of(self, relative: str) -> Path:
        """Return a path of the config (a dataset's or the goals file's) under the root."""
        return self.root.joinpath(*PurePosixPath(relative).parts)


def read_json(path: Path, label: str) -> Any:
    """Read a JSON file of a bundle, naming ``label`` in any error.

    Args:
        path: The file to read.
        label: How the file is named in messages (``openlayer.json``, ``tests.json``).

    Returns:
        The parsed value.

    Raises:
        InvalidBundle: The file is missing, not UTF-8, or not JSON (with line and column).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise InvalidBundle(
            f"{label}: the file does not exist in the bundle", where=label
        ) from error
    except UnicodeDecodeError as error:
        raise InvalidBundle(
            f"{label}: the file is not UTF-8 text ({error})", where=label
        ) from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidBundle(
            f"{label}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}",
            where=label,
        ) from error


def relative_path(value: object, field: str, label: str, root: Path) -> str:
    """Check that ``value`` is a relative path that stays inside ``root``.

    Args:
        value: The field's value.
        field: The field's path, e.g. ``datasets[0].path``.
        label: The file the field is in.
        root: The bundle root.

    Returns:
        The path, unchanged.

    Raises:
        InvalidBundle: The value is not a non-empty string, is absolute, has a ``..`` part,
            or resolves outside the root.
    """
    if not isinstance(value, str) or not value.strip():
        raise _bad(label, field, f"must be a non-empty relative path, got {value!r}")
    posix = value.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise _bad(label, field, f"must be a relative path inside the bundle, got {value!r}")
    if ".." in posix.split("/"):
        raise _bad(label, field, f"must not contain '..', got {value!r}")
    base = root.resolve()
    target = base.joinpath(*PurePosixPath(posix).parts).resolve()
    if base not in target.parents:
        raise _bad(label, field, f"must stay inside the bundle, got {value!r}")
    return value


def load_config(root: Path) -> BundleConfig:
    """Read and check ``root/openlayer.json``.

    Args:
        root: The bundle folder.

    Returns:
        The parsed config.

    Raises:
        InvalidBundle: The file is missing, not JSON, or a field is malformed; the message
            names the field (``openlayer.json: datasets[1].label must be ...``) and
            ``where`` is the field's path.
    """
    data = read_json(root / CONFIG_NAME, CONFIG_NAME)
    if not isinstance(data, dict):
        raise InvalidBundle(
            f"{CONFIG_NAME}: the top level must be a JSON object, got {_kind(data)}",
            where=CONFIG_NAME,
        )
    task_type = data.get("taskType")
    if task_type not in TASK_TYPES:
        raise _bad(
            CONFIG_NAME, "taskType", f"must be one of {_choices(TASK_TYPES)}, got {task_type!r}"
        )
    tests_key = "testsPath" if "testsPath" in data else "goalsPath"
    tests_path = data.get(tests_key)
    if tests_path is not None:
        tests_path = relative_path(tests_path, tests_key, CONFIG_NAME, root)
    return BundleConfig(
        task_type=str(task_type),
        model=_model(data.get("model")),
        datasets=_datasets(data.get("datasets", []), root),
        tests_path=tests_path,
        root=root,
    )


def _model(value: object) -> ModelConfig | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad(CONFIG_NAME, "model", f"must be an object, got {_kind(value)}")
    model_type = value.get("modelType")
    if model_type not in MODEL_TYPES:
        raise _bad(CONFIG_NAME, "model.modelType", f"must be 'shell' or 'full', got {model_type!r}")
    command = _optional_str(value, "batchCommand", "model")
    if model_type == "full" and (command is None or not command.strip()):
        raise _bad(CONFIG_NAME, "model.batchCommand", "is required when modelType is 'full'")
    return ModelConfig(model_type=str(model_type), batch_command=command)


def _datasets(value: object, root: Path) -> tuple[DatasetConfig, ...]:
    if not isinstance(value, list):
        raise _bad(CONFIG_NAME, "datasets", f"must be a list, got {_kind(value)}")
    datasets: list[DatasetConfig] = []
    for index, item in enumerate(value):
        dataset = _dataset(item, f"datasets[{index}]", root)
        for seen, other in enumerate(datasets):
            if other.label == dataset.label:
                raise _bad(
                    CONFIG_NAME,
                    f"datasets[{index}].label",
                    f"is {dataset.label!r}, like datasets[{seen}]; each label may be used once",
                )
            if other.name == dataset.name:
                raise _bad(
                    CONFIG_NAME,
                    f"datasets[{index}].name",
                    f"is {dataset.name!r}, like datasets[{seen}]; names must be unique",
                )
        datasets.append(dataset)
    return tuple(datasets)


def _dataset(item: object, at: str, root: Path) -> DatasetConfig:
    if not isinstance(item, dict):
        raise _bad(CONFIG_NAME, at, f"must be an object, got {_kind(item)}")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _bad(CONFIG_NAME, f"{at}.name", f"must be a non-empty string, got {name!r}")
    path = relative_path(item.get("path"), f"{at}.path", CONFIG_NAME, root)
    label = item.get("label")
    if label not in DATASET_LABELS:
        raise _bad(CONFIG_NAME, f"{at}.label", f"must be 'training' or 'validation', got {label!r}")
    predictions = _optional_str(item, "predictionsColumnName", at)
    output = _optional_str(item, "outputColumnName", at)
    if predictions is not None and output is not None and predictions != output:
        raise _bad(
            CONFIG_NAME,
            f"{at}.outputColumnName",
            f"is {output!r} but predictionsColumnName is {predictions!r}; give one of them",
        )
    return DatasetConfig(
        name=name,
        path=path,
        label=str(label),
        label_column=_optional_str(item, "labelColumnName", at),
        predictions_column=predictions if predictions is not None else output,
        scores_column=_optional_str(item, "predictionScoresColumnName", at),
        class_names=_str_list(item, "classNames", at),
        feature_names=_str_list(item, "featureNames", at),
        text_column=_optional_str(item, "textColumnName", at),
    )


def _optional_str(data: dict[str, Any], key: str, at: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _bad(CONFIG_NAME, f"{at}.{key}", f"must be a non-empty string, got {value!r}")
    return value


def _str_list(data: dict[str, Any], key: str, at: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _bad(CONFIG_NAME, f"{at}.{key}", f"must be a list of strings, got {_kind(value)}")
    for index, element in enumerate(value):
        if not isinstance(element, str):
            raise _bad(CONFIG_NAME, f"{at}.{key}[{index}]", f"must be a string, got {element!r}")
    return tuple(value)


def _bad(label: str, field: str, problem: str) -> InvalidBundle:
    return InvalidBundle(f"{label}: {field} {problem}", where=field)


def _choices(values: tuple[str, ...]) -> str:
    return ", ".join(repr(value) for value in values)


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), f"a {type(value).__name__}")
