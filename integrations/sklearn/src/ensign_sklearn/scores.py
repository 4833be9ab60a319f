"""Which metrics a fit logs, and computing them.

Metric names (what ``promote=`` conditions use):

* ``fit_time_s``: seconds the fit took (always).
* Classifiers: ``accuracy``, ``f1_macro``, ``precision_macro``, ``recall_macro`` and, when
  the estimator has ``predict_proba`` and the data allow it, ``roc_auc`` (one-vs-rest for
  more than two classes).
* Regressors: ``r2``, ``mae``, ``mse``, ``rmse``.
* Each score is logged as ``train_<score>`` on the training data (when targets are given)
  and ``eval_<score>`` on the evaluation data (when given).
* Searches (``GridSearchCV``, ``RandomizedSearchCV``, ...): ``best_cv_score`` (the
  search's ``best_score_``) and, per candidate ``i`` at step ``i``, ``cv_<column>`` for
  every ``mean_*``, ``std_*`` and ``rank_*`` column of ``cv_results_``
  (``cv_mean_test_score``, ``cv_rank_test_score``, ``cv_mean_fit_time``, ...).
  Scores of the refitted best estimator are logged as above.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, is_classifier, is_regressor
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from ensign.promotion.spec import Promotion
from ensign_sklearn.errors import MetricNeverLogged
from ensign_sklearn.params import json_safe

__all__ = [
    "BEST_CV_SCORE",
    "CLASSIFIER_SCORES",
    "CV_PREFIX",
    "EVAL_PREFIX",
    "FIT_TIME",
    "REGRESSOR_SCORES",
    "TRAIN_PREFIX",
    "MetricPlan",
    "check_promotion",
    "compute_scores",
    "cv_table",
    "is_search",
    "metric_key",
    "metric_names",
    "plan_metrics",
]

_log = logging.getLogger("ensign_sklearn")

FIT_TIME = "fit_time_s"
TRAIN_PREFIX = "train_"
EVAL_PREFIX = "eval_"
BEST_CV_SCORE = "best_cv_score"
CV_PREFIX = "cv_"
CLASSIFIER_SCORES = ("accuracy", "f1_macro", "precision_macro", "recall_macro")
ROC_AUC = "roc_auc"
REGRESSOR_SCORES = ("r2", "mae", "mse", "rmse")
_CV_COLUMN = re.compile(r"(mean|std|rank)_")
_UNSAFE = re.compile(r"[^A-Za-z0-9_./:-]")


def is_search(estimator: Any) -> bool:
    """Whether ``estimator`` is a hyper-parameter search (``GridSearchCV`` and kin)."""
    from sklearn.model_selection._search import BaseSearchCV

    return isinstance(estimator, BaseSearchCV)


def _task(estimator: Any) -> str | None:
    if is_classifier(estimator):
        return "classifier"
    if is_regressor(estimator):
        return "regressor"
    return None


def _can_predict(estimator: Any) -> bool:
    if is_search(estimator):
        return estimator.refit is not False
    return hasattr(estimator, "predict")


def _scorer_names(scoring: Any) -> tuple[list[str] | None, bool]:
    """A search's scorer names (``None`` when unknown before fitting) and if it is multimetric."""
    if scoring is None or isinstance(scoring, str):
        return ["score"], False
    if isinstance(scoring, (Mapping, list, tuple, set, frozenset)):
        return [str(k) for k in scoring], True
    return None, False  # a callable: one score or a dict of them, known after the fit


def metric_key(name: str) -> str:
    """Return ``name`` with characters a promotion condition cannot spell replaced by ``_``."""
    return _UNSAFE.sub("_", name)


@dataclass(frozen=True)
class MetricPlan:
    """The metrics a fit will log, known before it starts.

    Attributes:
        names: Every metric name the fit logs (``roc_auc`` ones when the data allow).
        open_prefix: A prefix whose metric names are only known after the fit (the
            ``cv_`` columns of a search with a callable ``scoring``), else ``None``.
        predictor: Whether the estimator is a classifier, regressor or search (what
            ``autolog`` promotes).
    """

    names: frozenset[str]
    open_prefix: str | None
    predictor: bool

    def logs(self, metric: str) -> bool:
        """Whether the fit may log ``metric``."""
        return metric in self.names or (
            self.open_prefix is not None and metric.startswith(self.open_prefix)
        )


def _score_names(estimator: Any) -> list[str]:
    task = _task(estimator)
    if task == "classifier":
        names = list(CLASSIFIER_SCORES)
        if hasattr(estimator, "predict_proba"):
            names.append(ROC_AUC)
        return names
    if task == "regressor":
        return list(REGRESSOR_SCORES)
    return []


def _search_names(search: Any) -> tuple[set[str], str | None]:
    scorers, multimetric = _scorer_names(search.scoring)
    names = {f"{CV_PREFIX}{s}_{t}" for s in ("mean", "std") for t in ("fit_time", "score_time")}
    if scorers is not None:
        subsets = ["test", "train"] if search.return_train_score else ["test"]
        for scorer in scorers:
            for subset in subsets:
                names.add(metric_key(f"{CV_PREFIX}mean_{subset}_{scorer}"))
                names.add(metric_key(f"{CV_PREFIX}std_{subset}_{scorer}"))
            names.add(metric_key(f"{CV_PREFIX}rank_test_{scorer}"))
    if not callable(search.refit) and (bool(search.refit) or not multimetric):
        names.add(BEST_CV_SCORE)
    return names, (None if scorers is not None else CV_PREFIX)


def plan_metrics(estimator: Any, *, has_targets: bool, has_evaluation: bool) -> MetricPlan:
    """Return the metrics a fit of ``estimator`` will log.

    Args:
        estimator: The (unfitted) estimator.
        has_targets: Whether training targets ``y`` are given (training scores need them).
        has_evaluation: Whether evaluation data are given.
    """
    names = {FIT_TIME}
    open_prefix = None
    search = is_search(estimator)
    if search:
        found, open_prefix = _search_names(estimator)
        names |= found
    scores = _score_names(estimator) if _can_predict(estimator) else []
    if has_targets:
        names |= {TRAIN_PREFIX + s for s in scores}
    if has_evaluation:
        names |= {EVAL_PREFIX + s for s in scores}
    predictor = search or _task(estimator) is not None
    return MetricPlan(frozenset(names), open_prefix, predictor)


def metric_names(
    estimator: Any, *, has_targets: bool = True, has_evaluation: bool = False
) -> list[str]:
    """Return, sorted, the metric names a fit of ``estimator`` logs (see the module doc).

    Args:
        estimator: The estimator to fit.
        has_targets: Whether the fit gets training targets ``y``.
        has_evaluation: Whether evaluation data are given.
    """
    plan = plan_metrics(estimator, has_targets=has_targets, has_evaluation=has_evaluation)
    return sorted(plan.names)


def check_promotion(
    promotion: Promotion, estimator: Any, plan: MetricPlan, *, has_evaluation: bool
) -> None:
    """Raise before fitting when ``promotion`` needs a metric the fit never logs.

    Raises:
        MetricNeverLogged: naming the metric and listing the ones the fit logs.
    """
    for metric in sorted(promotion.metrics):
        if plan.logs(metric):
            continue
        kind = type(estimator).__name__
        if metric.startswith(EVAL_PREFIX) and not has_evaluation:
            why = f"no evaluation data were given for {kind}: pass X_eval and y_eval"
        else:
            why = f"{kind} does not log it"
        raise MetricNeverLogged(metric, plan.names, why)


def _roc_auc(estimator: Any, x: Any, y: Any) -> float | None:
    classes = getattr(estimator, "classes_", None)
    if classes is None or not hasattr(estimator, "predict_proba"):
        return None
    labels = np.asarray(classes)
    present = np.unique(np.asarray(y))
    # Every class must be present (and no unknown one) for the score to be defined.
    if labels.ndim != 1 or len(labels) < 2 or len(present) != len(labels):
        return None
    if not np.isin(present, labels).all():
        return None
    proba = estimator.predict_proba(x)
    if not isinstance(proba, np.ndarray) or proba.ndim != 2 or proba.shape[1] != len(labels):
        return None
    if len(labels) == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", labels=labels))


def _classifier_scores(estimator: Any, x: Any, y: Any) -> dict[str, float]:
    predicted = estimator.predict(x)
    scores = {"accuracy": float(accuracy_score(y, predicted))}
    for name, function in (
        ("f1_macro", f1_score),
        ("precision_macro", precision_score),
        ("recall_macro", recall_score),
    ):
        scores[name] = float(function(y, predicted, average="macro", zero_division=0))
    try:
        auc = _roc_auc(estimator, x, y)
    except (ValueError, TypeError) as exc:
        _log.warning("roc_auc not logged for %s: %s", type(estimator).__name__, exc)
        auc = None
    if auc is not None:
        scores[ROC_AUC] = auc
    return scores


def _regressor_scores(estimator: Any, x: Any, y: Any) -> dict[str, float]:
    predicted = estimator.predict(x)
    mse = float(mean_squared_error(y, predicted))
    return {
        "r2": float(r2_score(y, predicted)),
        "mae": float(mean_absolute_error(y, predicted)),
        "mse": mse,
        "rmse": math.sqrt(mse),
    }


def compute_scores(estimator: BaseEstimator, x: Any, y: Any, prefix: str) -> dict[str, float]:
    """Return the default scores of a fitted estimator on ``(x, y)``, names prefixed.

    Estimators that are neither classifiers nor regressors, or that cannot predict (a
    search with ``refit=False``), give no scores.
    """
    if y is None or not _can_predict(estimator):
        return {}
    task = _task(estimator)
    if task == "classifier":
        scores = _classifier_scores(estimator, x, y)
    elif task == "regressor":
        scores = _regressor_scores(estimator, x, y)
    else:
        return {}
    return {prefix + name: value for name, value in scores.items()}


def _column(values: Any) -> Any:
    if isinstance(values, np.ndarray) and not isinstance(values, np.ma.MaskedArray):
        values = values.tolist()  # every candidate, however many
    return json_safe(values)


def cv_table(search: Any) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Return a fitted search's per-candidate metrics and its ``cv_results_`` as JSON.

    Returns:
        One dict of ``cv_*`` metrics per candidate (in candidate order), and the whole
        ``cv_results_`` with JSON-safe values (``params`` included).
    """
    results: Mapping[str, Any] = search.cv_results_
    candidates = len(results["params"])
    rows: list[dict[str, float]] = [{} for _ in range(candidates)]
    for column, values in results.items():
        if not _CV_COLUMN.match(column):
            continue
        key = metric_key(CV_PREFIX + column)
        for index, value in enumerate(np.asarray(values, dtype=float).tolist()):
            rows[index][key] = value
    table = {str(column): _column(values) for column, values in results.items()}
    return rows, table
