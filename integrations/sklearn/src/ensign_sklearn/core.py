"""``log_estimator``: fit an estimator and log its parameters, data, scores and model."""

from __future__ import annotations

import io
import json
import pickle
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import sklearn

from ensign import tracking
from ensign.backend import open_backend
from ensign.config import resolve_project
from ensign.errors import ConfigurationError, RunEnded
from ensign.names import check_project_key
from ensign.promotion.spec import Promotion, as_promotion
from ensign.records import ArtifactVersion, PromotionDecision
from ensign.tracking.run import Run
from ensign_sklearn import _guard
from ensign_sklearn.data import data_digest, data_summary, dataset_digest
from ensign_sklearn.errors import EstimatorNotSaved
from ensign_sklearn.params import estimator_params, json_safe, qualified_name
from ensign_sklearn.scores import (
    BEST_CV_SCORE,
    EVAL_PREFIX,
    FIT_TIME,
    TRAIN_PREFIX,
    MetricPlan,
    check_promotion,
    compute_scores,
    cv_table,
    is_search,
    plan_metrics,
)

__all__ = [
    "CV_RESULTS",
    "EVALUATION_DATA",
    "MODEL_FILE",
    "TRAINING_DATA",
    "DataRef",
    "LoggedEstimator",
    "last_logged",
    "log_estimator",
]

#: Name of the data ref of the training data.
TRAINING_DATA = "training_data"
#: Name of the data ref of the evaluation data.
EVALUATION_DATA = "evaluation_data"
#: Name of the file ref that holds a search's ``cv_results_``.
CV_RESULTS = "cv_results.json"
#: File name of the saved model inside a model version.
MODEL_FILE = "model.joblib"
#: The tag every run that logs an estimator gets.
TAG = "sklearn"


@dataclass(frozen=True)
class DataRef:
    """A data set logged as an input of the run.

    Attributes:
        name: The ref's name (``training_data`` or ``evaluation_data``).
        digest: sha256 of features and targets together (see :func:`dataset_digest`).
        summary: Rows, features, type, columns, and the digests of ``X`` and ``y``.
    """

    name: str
    digest: str
    summary: dict[str, Any]


@dataclass(frozen=True)
class LoggedEstimator:
    """What one logged fit recorded.

    Attributes:
        run_uuid: The run it was logged to.
        estimator: The fitted estimator (the object that was passed in).
        params: The logged parameters.
        metrics: The logged scores and ``fit_time_s`` (per-candidate ``cv_*`` metrics of a
            search are not repeated here).
        training_data: The training data ref.
        evaluation_data: The evaluation data ref, when evaluation data were given.
        model: The name of the model ref, or ``None`` with ``log_model=False``.
        version: The model version, when ``promote`` was given and its condition held.
        decision: The promotion decision with its reasons, when ``promote`` was given.
        outputs: The logged outputs (the estimator class; a search's ``best_params``,
            ``best_index`` and ``candidates``).
    """

    run_uuid: str
    estimator: Any
    params: dict[str, Any]
    metrics: dict[str, float]
    training_data: DataRef
    evaluation_data: DataRef | None
    model: str | None
    version: ArtifactVersion | None = None
    decision: PromotionDecision | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


_last_lock = threading.Lock()
_last: LoggedEstimator | None = None


def last_logged() -> LoggedEstimator | None:
    """Return what the most recent logged fit of this process recorded (``autolog`` too)."""
    return _last


@dataclass(frozen=True)
class _Request:
    estimator: Any
    x_train: Any
    y_train: Any
    x_eval: Any
    y_eval: Any
    run: Run | None
    project: str | None
    tracking_uri: Any
    promotion: Promotion | None
    name: str
    log_model: bool
    fit: Callable[[], Any] | None  # None: the estimator is already fitted


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(memoryview(data))


def _check_picklable(estimator: Any) -> None:
    try:
        pickle.Pickler(_Discard(), protocol=pickle.HIGHEST_PROTOCOL).dump(estimator)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise EstimatorNotSaved(type(estimator).__name__, exc) from exc


def _save_model(estimator: Any, path: Path) -> None:
    try:
        joblib.dump(estimator, path)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise EstimatorNotSaved(type(estimator).__name__, exc) from exc


def _data_ref(name: str, x: Any, y: Any) -> DataRef:
    x_digest = data_digest(x)
    y_digest = data_digest(y) if y is not None else None
    return DataRef(
        name=name,
        digest=dataset_digest(x_digest, y_digest),
        summary=data_summary(x, y, x_digest, y_digest),
    )


def _resolve_run(
    run: Run | None, project: str | None, tracking_uri: Any, name: str
) -> tuple[Run, bool]:
    """Return the run to log to and whether this call started (and so ends) it."""
    if run is not None:
        if run.ended:
            raise RunEnded(f"run {run.uuid} has ended; pass an open run, or none to start one")
        return run, False
    active = tracking.get_run()
    if active is not None and not active.ended:
        return active, False
    key = check_project_key(resolve_project(project))
    backend = open_backend(tracking_uri)
    try:
        return Run(backend, key, name=name, tags=[TAG]), True
    except BaseException:
        backend.close()
        raise


def _model_summary(estimator: Any) -> dict[str, Any]:
    return {
        "estimator": qualified_name(estimator),
        "serializer": "joblib",
        "sklearn_version": sklearn.__version__,
        "joblib_version": joblib.__version__,
    }


def _log_search(
    run: Run, search: Any, folder: Path
) -> tuple[dict[str, float], dict[str, Any], Path]:
    """Log a search's per-candidate metrics; return its best score, outputs, results file."""
    rows, table = cv_table(search)
    for index, row in enumerate(rows):
        run.log_metrics(step=index, **row)
    metrics: dict[str, float] = {}
    best_score = getattr(search, "best_score_", None)
    if best_score is not None:
        metrics[BEST_CV_SCORE] = float(best_score)
    outputs: dict[str, Any] = {"candidates": len(rows)}
    if hasattr(search, "best_params_"):
        outputs["best_params"] = json_safe(search.best_params_)
    if hasattr(search, "best_index_"):
        outputs["best_index"] = int(search.best_index_)
    path = folder / CV_RESULTS
    path.write_text(json.dumps(table, sort_keys=True, allow_nan=False))
    return metrics, outputs, path


def _fit_and_log(
    run: Run, request: _Request, plan: MetricPlan, folder: Path
) -> tuple[LoggedEstimator, Any]:
    estimator = request.estimator
    params = estimator_params(estimator)
    training = _data_ref(TRAINING_DATA, request.x_train, request.y_train)
    evaluation = (
        _data_ref(EVALUATION_DATA, request.x_eval, request.y_eval)
        if request.x_eval is not None
        else None
    )
    run.log_params(**params)
    run.log_tags(TAG)
    for ref in (training, evaluation):
        if ref is not None:
            run.log_data_ref(ref.name, hash=ref.digest, summary=ref.summary, is_input=True)

    metrics: dict[str, float] = {}
    result: Any = estimator
    if request.fit is not None:
        started = time.perf_counter()
        try:
            result = request.fit()
        except BaseException as exc:
            run.log_outputs(fit_error=f"{type(exc).__name__}: {exc}"[:1000])
            raise
        metrics[FIT_TIME] = time.perf_counter() - started

    metrics.update(compute_scores(estimator, request.x_train, request.y_train, TRAIN_PREFIX))
    if request.x_eval is not None:
        metrics.update(compute_scores(estimator, request.x_eval, request.y_eval, EVAL_PREFIX))
    outputs: dict[str, Any] = {"estimator": qualified_name(estimator)}
    cv_results: Path | None = None
    if is_search(estimator) and hasattr(estimator, "cv_results_"):
        best, found, cv_results = _log_search(run, estimator, folder)
        metrics.update(best)
        outputs.update(found)
    run.log_metrics(None, None, **metrics)
    run.log_outputs(**outputs)

    if request.log_model:
        model_path = folder / MODEL_FILE
        _save_model(estimator, model_path)  # before any file ref, so a failure leaves none
    if cv_results is not None:
        run.log_artifact_ref(
            cv_results, kind="file", name=CV_RESULTS, summary={"candidates": outputs["candidates"]}
        )
    if request.log_model:
        run.log_model_ref(
            model_path, name=request.name, framework="sklearn", summary=_model_summary(estimator)
        )
    run.flush()  # the temporary files are stored before they are removed

    version = None
    decision = None
    promotion = request.promotion
    if promotion is not None:
        version = run.promote_to_model_version(
            version=promotion.version,
            description=promotion.description,
            tags=promotion.tags,
            content={"framework": "sklearn", **_model_summary(estimator)},
            artifacts=[request.name],
            when=promotion.when,
            better_than=promotion.better_than,
            metric=promotion.metric,
            mode=promotion.mode,
            min_delta=promotion.min_delta,
            stage=promotion.stage,
        )
        decisions = run.backend.registry.list_decisions(run.uuid)
        decision = decisions[-1] if decisions else None
    logged = LoggedEstimator(
        run_uuid=run.uuid,
        estimator=estimator,
        params=params,
        metrics=metrics,
        training_data=training,
        evaluation_data=evaluation,
        model=request.name if request.log_model else None,
        version=version,
        decision=decision,
        outputs=outputs,
    )
    return logged, result


def _track(request: _Request) -> tuple[LoggedEstimator, Any]:
    """Check the request, then fit and log it; return the record and what ``fit`` returned.

    Fits that happen meanwhile (inside a meta-estimator, or inside the metrics) are not
    logged by ``autolog``.
    """
    global _last
    with _guard.logging_fit():
        logged, result = _checked_track(request)
    with _last_lock:
        _last = logged
    return logged, result


def _checked_track(request: _Request) -> tuple[LoggedEstimator, Any]:
    estimator = request.estimator
    has_eval = request.x_eval is not None
    plan = plan_metrics(estimator, has_targets=request.y_train is not None, has_evaluation=has_eval)
    if request.fit is None:
        plan = replace(plan, names=plan.names - {FIT_TIME})
    if request.promotion is not None:
        if not request.log_model:
            raise ConfigurationError(
                "promote needs log_model=True: a model version carries the saved model"
            )
        check_promotion(request.promotion, estimator, plan, has_evaluation=has_eval)
    if request.log_model and request.fit is not None:
        _check_picklable(estimator)
    run, owned = _resolve_run(
        request.run, request.project, request.tracking_uri, type(estimator).__name__
    )
    with tempfile.TemporaryDirectory(prefix="ensign-sklearn-") as folder:
        if owned:
            with run:  # ends it: failed when this raises, stopped on KeyboardInterrupt
                logged, result = _fit_and_log(run, request, plan, Path(folder))
        else:
            logged, result = _fit_and_log(run, request, plan, Path(folder))
    return logged, result


def _check_data(x_eval: Any, y_eval: Any, name: str) -> None:
    if (x_eval is None) != (y_eval is None):
        given, missing = ("X_eval", "y_eval") if y_eval is None else ("y_eval", "X_eval")
        raise ConfigurationError(f"{given} was given without {missing}: pass both or neither")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigurationError(f"name must be a non-empty string without '/', not {name!r}")


def log_estimator(
    estimator: Any,
    X_train: Any,  # noqa: N803 (scikit-learn's spelling)
    y_train: Any = None,
    X_eval: Any = None,  # noqa: N803
    y_eval: Any = None,
    *,
    run: Run | None = None,
    project: str | None = None,
    tracking_uri: str | None = None,
    promote: str | Promotion | None = None,
    name: str = "model",
    fit: bool = True,
    fit_params: Mapping[str, Any] | None = None,
    log_model: bool = True,
) -> LoggedEstimator:
    """Fit an estimator and log the fit: parameters, data, scores, model; then promote.

    The run is ``run`` when given, else the active run of :mod:`ensign.tracking`, else a new
    run in ``project`` that this call ends (``succeeded``, or ``failed`` when anything here
    raises). Into it go:

    * parameters: ``estimator.get_params(deep=True)`` with JSON-safe values;
    * inputs: ``training_data`` and ``evaluation_data`` data refs whose digest is a content
      hash of the arrays or DataFrames (equal data, equal digest, in any run);
    * metrics: ``fit_time_s``, ``train_*`` and ``eval_*`` scores (classifiers: accuracy,
      f1_macro, precision_macro, recall_macro, roc_auc; regressors: r2, mae, mse, rmse),
      and for a search ``best_cv_score`` plus ``cv_*`` per candidate (step = candidate index)
      — see :mod:`ensign_sklearn.scores`;
    * outputs: the estimator class, and for a search ``best_params``, ``best_index`` and
      ``candidates``; a ``cv_results.json`` file ref with the whole ``cv_results_``;
    * the fitted estimator saved with joblib as a ``model`` ref named ``name``
      (framework ``sklearn``).

    With ``promote``, the condition is checked against the metrics this fit will log
    before fitting starts; after a successful fit it is evaluated on the run's metrics and,
    when it holds, the model becomes a model version carrying the model ref (its lineage:
    the run and its data refs). A fit that raises logs ``fit_error``, promotes nothing, and
    its exception propagates unchanged.

    Args:
        estimator: A scikit-learn estimator (a ``Pipeline`` or a search too).
        X_train: Training features.
        y_train: Training targets (``None`` for unsupervised estimators).
        X_eval: Evaluation features; scores on them are logged as ``eval_*``.
        y_eval: Evaluation targets.
        run: The run to log to; it is not ended here.
        project: The project of a run started here; else ``ENSIGN_PROJECT``, else
            ``default``.
        tracking_uri: The tracking store of a run started here.
        promote: A condition string (``"eval_accuracy >= 0.9"``) or a
            :class:`~ensign.Promotion`.
        name: The model ref's name.
        fit: Fit the estimator here; ``False`` logs an estimator that is already fitted.
        fit_params: Extra keyword arguments for ``fit`` (``sample_weight``, ``groups``, ...).
        log_model: Save the fitted estimator; ``False`` skips it (and allows no ``promote``).

    Returns:
        What was logged, with the version and decision of a promotion.

    Raises:
        MetricNeverLogged: ``promote`` names a metric this fit never logs (before fitting).
        EstimatorNotSaved: the estimator cannot be pickled (before fitting when it already
            cannot be; the run stays open and usable when it is yours).
        ConfigurationError: evaluation features without targets (or the reverse), a bad
            ``name`` or ``promote``.
        InvalidCondition: ``promote`` does not parse.
        RunEnded: ``run`` has ended.
    """
    _check_data(X_eval, y_eval, name)
    extra = dict(fit_params or {})
    request = _Request(
        estimator=estimator,
        x_train=X_train,
        y_train=y_train,
        x_eval=X_eval,
        y_eval=y_eval,
        run=run,
        project=project,
        tracking_uri=tracking_uri,
        promotion=as_promotion(promote),
        name=name,
        log_model=log_model,
        fit=(lambda: estimator.fit(X_train, y_train, **extra)) if fit else None,
    )
    return _track(request)[0]
