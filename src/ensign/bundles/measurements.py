"""The measurement table: what a goal's threshold can measure, and how.

Performance measurements are computed with scikit-learn from a dataset's label,
predictions and scores columns; data checks look at the whole CSV as loaded. pandas and
scikit-learn are imported only when a dataset is loaded or measured, so the rest of
:mod:`ensign.bundles` works without them.

Classification averages follow openlayer: binary labels (``0``/``1``, or the two
``classNames`` with the second as the positive class) use the binary average, anything
else the macro average. Scores are a number per row (binary: the positive class's score)
or a JSON list per row (one score per class, in ``classNames`` order, or for classes
``0..k-1`` when the labels are those integers).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ensign.bundles.config import BundleConfig, DatasetConfig
from ensign.errors import InvalidBundle

__all__ = [
    "CLASSIFICATION",
    "KNOWN",
    "REGRESSION",
    "LoadedDataset",
    "Measurement",
    "load_dataset",
    "measure",
]

CLASSIFICATION = ("tabular-classification", "text-classification")
"""The task types whose predictions are classes."""

REGRESSION = ("tabular-regression",)
"""The task types whose predictions are numbers."""

_ALL_TASKS = CLASSIFICATION + REGRESSION


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset's CSV read with pandas, with the config that describes it.

    Attributes:
        config: The dataset's entry in ``openlayer.json``.
        frame: The CSV as a ``pandas.DataFrame``.
    """

    config: DatasetConfig
    frame: Any


@dataclass(frozen=True)
class Measurement:
    """One thing a threshold can measure.

    Attributes:
        name: The name goals use, e.g. ``accuracy``.
        description: What it is, in a few words.
        tasks: The task types it applies to.
        needs: The dataset columns it needs: ``label``, ``predictions``, ``scores``.
        compute: Computes the value from a loaded dataset.
    """

    name: str
    description: str
    tasks: tuple[str, ...]
    needs: tuple[str, ...]
    compute: Callable[[LoadedDataset], float]


_COLUMN_FIELDS = {
    "label": "labelColumnName",
    "predictions": "predictionsColumnName",
    "scores": "predictionScoresColumnName",
}


def load_dataset(config: BundleConfig, dataset: DatasetConfig) -> LoadedDataset:
    """Read a dataset's CSV and check that every column the config names is in it.

    Args:
        config: The bundle config (for the root).
        dataset: The dataset to read.

    Returns:
        The loaded dataset.

    Raises:
        InvalidBundle: The file is missing or not CSV, or a configured column (label,
            predictions, scores, text, features) is not among its columns; the message
            names the dataset, the file, the column and the columns the file has.
    """
    import pandas as pd

    path = config.path_of(dataset.path)
    where = f"dataset {dataset.name!r} ({dataset.path})"
    if not path.is_file():
        raise InvalidBundle(
            f"{where}: the file {dataset.path!r} does not exist in the bundle", where=dataset.path
        )
    try:
        frame = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise InvalidBundle(
            f"{where}: cannot read it as CSV: {error}", where=dataset.path
        ) from error
    columns = [str(column) for column in frame.columns]
    wanted = [
        ("labelColumnName", dataset.label_column),
        ("predictionsColumnName", dataset.predictions_column),
        ("predictionScoresColumnName", dataset.scores_column),
        ("textColumnName", dataset.text_column),
        *(("featureNames", name) for name in dataset.feature_names),
    ]
    for field, column in wanted:
        if column is not None and column not in columns:
            raise InvalidBundle(
                f"{where}: column {column!r} ({field}) is not in the file; "
                f"its columns are: {', '.join(columns) or 'none'}",
                where=column,
            )
    return LoadedDataset(config=dataset, frame=frame)


def measure(name: str, dataset: LoadedDataset, task_type: str) -> float:
    """Compute one measurement on one dataset.

    Args:
        name: A key of :data:`KNOWN`.
        dataset: The loaded dataset.
        task_type: The bundle's task type.

    Returns:
        The value (NaN when it is undefined, e.g. a ratio of an empty dataset).

    Raises:
        InvalidBundle: The measurement is unknown (the message lists the known ones), does
            not apply to the task type, needs a column the dataset config does not name,
            or cannot be computed from the values (empty cells, mixed label types, ...).
    """
    measurement = KNOWN.get(name)
    if measurement is None:
        raise InvalidBundle(
            f"unknown measurement {name!r}; known measurements: {', '.join(sorted(KNOWN))}",
            where=name,
        )
    if task_type not in measurement.tasks:
        raise InvalidBundle(
            f"measurement {name!r} does not apply to task type {task_type!r} "
            f"(it applies to {', '.join(measurement.tasks)})",
            where=name,
        )
    for need in measurement.needs:
        if _column(dataset.config, need) is None:
            field = _COLUMN_FIELDS[need]
            raise InvalidBundle(
                f"measurement {name!r} needs {field}, which dataset {dataset.config.name!r} "
                "does not set",
                where=field,
            )
    try:
        return float(measurement.compute(dataset))
    except InvalidBundle:
        raise
    except (ValueError, TypeError) as error:
        raise InvalidBundle(
            f"cannot compute {name!r} on dataset {dataset.config.name!r}: {error}", where=name
        ) from error


def _column(config: DatasetConfig, need: str) -> str | None:
    return {
        "label": config.label_column,
        "predictions": config.predictions_column,
        "scores": config.scores_column,
    }[need]


def _values(dataset: LoadedDataset, need: str) -> Any:
    """Return a needed column as a numpy array, refusing empty cells."""
    column = _column(dataset.config, need)
    series = dataset.frame[column]
    empty = int(series.isna().sum())
    if empty:
        raise InvalidBundle(
            f"dataset {dataset.config.name!r}: column {column!r} has {empty} empty cell(s)",
            where=column,
        )
    return series.to_numpy()


def _numbers(dataset: LoadedDataset, need: str) -> Any:
    import numpy as np

    values = _values(dataset, need)
    try:
        return values.astype(np.float64)
    except (ValueError, TypeError) as error:
        column = _column(dataset.config, need)
        raise InvalidBundle(
            f"dataset {dataset.config.name!r}: column {column!r} must hold numbers ({error})",
            where=column,
        ) from error


def _average(dataset: LoadedDataset, y_true: Any, y_pred: Any) -> dict[str, Any]:
    """Return the ``average``/``pos_label`` arguments for precision, recall and f1."""
    import numpy as np

    labels = set(np.unique(y_true).tolist()) | set(np.unique(y_pred).tolist())
    names = dataset.config.class_names
    if len(labels) <= 2 and labels <= {0, 1}:
        return {"average": "binary", "pos_label": 1}
    if len(names) == 2 and labels <= set(names):
        return {"average": "binary", "pos_label": names[1]}
    return {"average": "macro"}


def _classified(function: str) -> Callable[[LoadedDataset], float]:
    def compute(dataset: LoadedDataset) -> float:
        from sklearn import metrics

        y_true = _values(dataset, "label")
        y_pred = _values(dataset, "predictions")
        if function == "accuracy":
            return float(metrics.accuracy_score(y_true, y_pred))
        scorer = getattr(metrics, f"{function}_score")
        args = _average(dataset, y_true, y_pred)
        return float(scorer(y_true, y_pred, zero_division=0, **args))

    return compute


def _scores(dataset: LoadedDataset) -> Any:
    """Return the scores as a 1-d array (binary) or an ``n x k`` matrix (one per class)."""
    import numpy as np

    raw = _values(dataset, "scores")
    if raw.dtype.kind in "iuf":
        return raw.astype(np.float64)
    rows = []
    for index, cell in enumerate(raw):
        try:
            row = json.loads(cell) if isinstance(cell, str) else cell
            rows.append([float(value) for value in row])
        except (ValueError, TypeError) as error:
            column = dataset.config.scores_column
            raise InvalidBundle(
                f"dataset {dataset.config.name!r}: row {index} of column {column!r} is not a "
                f"number or a JSON list of numbers: {cell!r}",
                where=column,
            ) from error
    if len({len(row) for row in rows}) > 1:
        raise InvalidBundle(
            f"dataset {dataset.config.name!r}: the rows of column "
            f"{dataset.config.scores_column!r} hold lists of different lengths",
            where=dataset.config.scores_column,
        )
    return np.asarray(rows, dtype=np.float64)


def _class_indices(dataset: LoadedDataset, y_true: Any, count: int) -> Any:
    """Return each row's class as an index into the score columns.

    The score columns follow ``classNames`` when it has one name per column and holds
    every label, else the labels must be the integers ``0..k-1``.
    """
    import numpy as np

    names = list(dataset.config.class_names)
    present = set(np.unique(y_true).tolist())
    if len(names) == count and present <= set(names):
        order: list[Any] = names
    elif present <= set(range(count)):
        order = list(range(count))
    else:
        raise InvalidBundle(
            f"dataset {dataset.config.name!r}: cannot match the {count} scores of each row to "
            f"the labels {sorted(map(str, present))}; give classNames in score order",
            where="classNames",
        )
    index = {label: position for position, label in enumerate(order)}
    return np.asarray([index[value] for value in y_true.tolist()], dtype=np.int64)


def _probabilistic(function: str) -> Callable[[LoadedDataset], float]:
    def compute(dataset: LoadedDataset) -> float:
        import numpy as np
        from sklearn import metrics

        y_true = _values(dataset, "label")
        scores = _scores(dataset)
        if scores.ndim == 2 and scores.shape[1] == 1:
            scores = scores[:, 0]
        if scores.ndim == 1:  # the positive class's score
            scores = np.column_stack([1.0 - scores, scores])
        classes = scores.shape[1]
        y_index = _class_indices(dataset, y_true, classes)
        labels = list(range(classes))
        if function == "log_loss":
            return float(metrics.log_loss(y_index, scores, labels=labels))
        if classes == 2:
            return float(metrics.roc_auc_score(y_index, scores[:, 1]))
        return float(
            metrics.roc_auc_score(
                y_index, scores, multi_class="ovr", average="macro", labels=labels
            )
        )

    return compute


def _regression(function: str) -> Callable[[LoadedDataset], float]:
    def compute(dataset: LoadedDataset) -> float:
        from sklearn import metrics

        y_true = _numbers(dataset, "label")
        y_pred = _numbers(dataset, "predictions")
        if function == "rmse":
            return math.sqrt(float(metrics.mean_squared_error(y_true, y_pred)))
        return float(getattr(metrics, function)(y_true, y_pred))

    return compute


def _ratio(count: Callable[[LoadedDataset], float]) -> Callable[[LoadedDataset], float]:
    def compute(dataset: LoadedDataset) -> float:
        rows = len(dataset.frame)
        return count(dataset) / rows if rows else math.nan

    return compute


def _null_rows(dataset: LoadedDataset) -> float:
    return float(dataset.frame.isna().any(axis=1).sum())


def _duplicate_rows(dataset: LoadedDataset) -> float:
    return float(dataset.frame.duplicated().sum())


_LP = ("label", "predictions")
_LS = ("label", "scores")
_CLS = CLASSIFICATION
_REG = REGRESSION
_ANY = _ALL_TASKS


def _row_count(dataset: LoadedDataset) -> float:
    return float(len(dataset.frame))


def _column_count(dataset: LoadedDataset) -> float:
    return float(len(dataset.frame.columns))


_TABLE = (
    ("accuracy", "share of correct predictions", _CLS, _LP, _classified("accuracy")),
    ("precision", "precision (binary or macro)", _CLS, _LP, _classified("precision")),
    ("recall", "recall (binary or macro)", _CLS, _LP, _classified("recall")),
    ("f1", "F1 score (binary or macro)", _CLS, _LP, _classified("f1")),
    ("rocAuc", "ROC AUC (binary, or macro one-vs-rest)", _CLS, _LS, _probabilistic("roc_auc")),
    ("logLoss", "log loss of the scores", _CLS, _LS, _probabilistic("log_loss")),
    ("mae", "mean absolute error", _REG, _LP, _regression("mean_absolute_error")),
    ("mse", "mean squared error", _REG, _LP, _regression("mean_squared_error")),
    ("rmse", "root mean squared error", _REG, _LP, _regression("rmse")),
    ("r2", "coefficient of determination", _REG, _LP, _regression("r2_score")),
    (
        "mape",
        "mean absolute percentage error",
        _REG,
        _LP,
        _regression("mean_absolute_percentage_error"),
    ),
    ("nullRowCount", "rows with an empty cell", _ANY, (), _null_rows),
    ("duplicateRowCount", "rows equal to an earlier row", _ANY, (), _duplicate_rows),
    ("rowCount", "rows", _ANY, (), _row_count),
    ("columnCount", "columns", _ANY, (), _column_count),
    ("nullRowRatio", "share of rows with an empty cell", _ANY, (), _ratio(_null_rows)),
    ("duplicateRowRatio", "share of duplicate rows", _ANY, (), _ratio(_duplicate_rows)),
)

KNOWN: dict[str, Measurement] = {row[0]: Measurement(*row) for row in _TABLE}
"""Every measurement a goal may name, by name."""
