"""ensign_sklearn.log_estimator: real estimators fitted on real data sets, logged to real stores."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import ensign_sklearn
import joblib
import numpy as np
import pytest
from ensign_sklearn import (
    EstimatorNotSaved,
    MetricNeverLogged,
    data_digest,
    dataset_digest,
    log_estimator,
)
from scipy.stats import loguniform
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
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
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from ensign import Promotion, tracking
from ensign.client import ProjectClient, RunClient
from ensign.errors import ConfigurationError, RunEnded, UnknownMetric

Split = tuple[Any, Any, Any, Any]


@pytest.fixture(scope="module")
def digits() -> Split:
    x, y = load_digits(return_X_y=True)
    return tuple(train_test_split(x, y, test_size=0.25, random_state=0))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def iris() -> Split:
    x, y = load_iris(return_X_y=True)
    return tuple(train_test_split(x, y, test_size=0.3, random_state=0, stratify=y))  # type: ignore[return-value]


def last_values(run_uuid: str) -> dict[str, float]:
    with RunClient(run_uuid) as client:
        return {name: points[-1].value for name, points in client.get_metrics().items()}


def refs_of(run_uuid: str) -> dict[str, Any]:
    with RunClient(run_uuid) as client:
        return {ref.name: ref for ref in client.get_artifacts_lineage()}


def run_record(run_uuid: str) -> Any:
    with RunClient(run_uuid) as client:
        return client.get_run()


# --- a plain fit ------------------------------------------------------------------------


def test_classifier_fit_logs_params_data_scores_and_model(digits: Split) -> None:
    x_train, x_test, y_train, y_test = digits
    model = LogisticRegression(C=0.5, max_iter=2000)

    logged = log_estimator(model, x_train, y_train, x_test, y_test, project="digits")

    run = run_record(logged.run_uuid)
    assert run.status == "succeeded"
    assert run.project == "digits"
    assert "sklearn" in run.tags
    assert run.params["C"] == 0.5
    assert run.params["max_iter"] == 2000
    assert run.outputs["estimator"] == "sklearn.linear_model._logistic.LogisticRegression"

    predicted = model.predict(x_test)
    metrics = last_values(logged.run_uuid)
    assert metrics["eval_accuracy"] == pytest.approx(accuracy_score(y_test, predicted))
    assert metrics["eval_f1_macro"] == pytest.approx(f1_score(y_test, predicted, average="macro"))
    assert metrics["eval_precision_macro"] == pytest.approx(
        precision_score(y_test, predicted, average="macro")
    )
    assert metrics["eval_recall_macro"] == pytest.approx(
        recall_score(y_test, predicted, average="macro")
    )
    assert metrics["eval_roc_auc"] == pytest.approx(
        roc_auc_score(y_test, model.predict_proba(x_test), multi_class="ovr")
    )
    assert metrics["train_accuracy"] == pytest.approx(model.score(x_train, y_train))
    assert metrics["fit_time_s"] > 0
    assert logged.metrics == pytest.approx(metrics)

    refs = refs_of(logged.run_uuid)
    training, evaluation, saved = refs["training_data"], refs["evaluation_data"], refs["model"]
    assert training.kind == evaluation.kind == "data"
    assert training.is_input
    assert evaluation.is_input
    assert training.digest == dataset_digest(data_digest(x_train), data_digest(y_train))
    assert evaluation.digest == dataset_digest(data_digest(x_test), data_digest(y_test))
    assert training.summary["rows"] == len(x_train)
    assert training.summary["features"] == 64
    assert saved.kind == "model"
    assert not saved.is_input
    assert saved.summary["framework"] == "sklearn"
    assert saved.summary["serializer"] == "joblib"
    assert logged.model == "model"
    assert logged.version is None


def test_promotion_registers_a_model_version_with_lineage_and_the_fitted_model(
    digits: Split, tmp_path: Path
) -> None:
    x_train, x_test, y_train, y_test = digits
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))

    logged = log_estimator(
        model,
        x_train,
        y_train,
        x_test,
        y_test,
        project="digits",
        promote=Promotion(when="eval_accuracy >= 0.9", description="scaled logreg"),
    )

    version = logged.version
    assert version is not None
    assert version.kind == "model"
    assert version.name == "v1"
    assert version.description == "scaled logreg"
    assert version.run == logged.run_uuid
    assert version.artifacts == ["model"]
    assert logged.decision is not None
    assert logged.decision.promoted
    assert any("eval_accuracy" in reason for reason in logged.decision.reasons)
    assert run_record(logged.run_uuid).is_promoted

    with ProjectClient("digits") as client:
        lineage = {ref.name: ref for ref in client.get_model_version_lineage("v1")}
        assert set(lineage) == {"training_data", "evaluation_data", "model"}
        folder = client.pull_model_version("v1", tmp_path / "pulled")
    loaded = joblib.load(next(Path(folder).rglob("model.joblib")))
    assert isinstance(loaded, Pipeline)
    np.testing.assert_array_equal(loaded.predict(x_test), model.predict(x_test))


def test_a_condition_that_does_not_hold_promotes_nothing_and_says_why(iris: Split) -> None:
    x_train, x_test, y_train, y_test = iris
    logged = log_estimator(
        DecisionTreeClassifier(max_depth=1, random_state=0),
        x_train,
        y_train,
        x_test,
        y_test,
        project="iris",
        promote="eval_accuracy >= 0.99",
    )
    assert logged.version is None
    assert logged.decision is not None
    assert not logged.decision.promoted
    with RunClient(logged.run_uuid) as client:
        decisions = client.get_promotions()
        assert client.get_run().status == "succeeded"
    assert len(decisions) == 1
    assert "eval_accuracy" in decisions[0].reasons[0]
    assert "false" in decisions[0].reasons[0]
    with ProjectClient("iris") as client:
        assert client.list_model_versions() == []


def test_regressor_logs_r2_mae_mse_rmse() -> None:
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=0)
    model = Ridge(alpha=0.5)

    logged = log_estimator(model, x_train, y_train, x_test, y_test, project="diabetes")

    predicted = model.predict(x_test)
    metrics = last_values(logged.run_uuid)
    mse = mean_squared_error(y_test, predicted)
    assert metrics["eval_r2"] == pytest.approx(r2_score(y_test, predicted))
    assert metrics["eval_mae"] == pytest.approx(mean_absolute_error(y_test, predicted))
    assert metrics["eval_mse"] == pytest.approx(mse)
    assert metrics["eval_rmse"] == pytest.approx(math.sqrt(mse))
    assert metrics["train_r2"] == pytest.approx(model.score(x_train, y_train))
    assert not any("accuracy" in name for name in metrics)


def test_binary_roc_auc_uses_the_positive_class_probability() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=0, stratify=y)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))

    logged = log_estimator(model, x_train, y_train, x_test, y_test, project="cancer")

    expected = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert logged.metrics["eval_roc_auc"] == pytest.approx(expected)


def test_a_classifier_without_predict_proba_logs_no_roc_auc(iris: Split) -> None:
    x_train, x_test, y_train, y_test = iris
    model = SVC()
    assert "eval_roc_auc" not in ensign_sklearn.metric_names(model, has_evaluation=True)

    logged = log_estimator(model, x_train, y_train, x_test, y_test, project="iris")

    assert "eval_accuracy" in logged.metrics
    assert not any("roc_auc" in name for name in last_values(logged.run_uuid))


def test_pipeline_params_are_flat_and_json_safe(iris: Split) -> None:
    x_train, _, y_train, _ = iris
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))])

    logged = log_estimator(model, x_train, y_train, project="iris")

    params = run_record(logged.run_uuid).params
    assert params["steps"] == [["scale", "StandardScaler"], ["clf", "LogisticRegression"]]
    assert params["clf"] == "LogisticRegression"
    assert params["clf__max_iter"] == 500
    assert params["scale__with_mean"] is True
    assert "train_accuracy" in logged.metrics
    assert "evaluation_data" not in refs_of(logged.run_uuid)


# --- searches -----------------------------------------------------------------------------


def test_grid_search_logs_best_score_params_and_every_candidate(digits: Split) -> None:
    x_train, x_test, y_train, y_test = digits
    search = GridSearchCV(
        make_pipeline(StandardScaler(), SVC()),
        {"svc__C": [0.1, 1.0, 10.0], "svc__gamma": ["scale", 0.001]},
        cv=3,
    )

    logged = log_estimator(search, x_train, y_train, x_test, y_test, project="digits")

    results = search.cv_results_
    candidates = len(results["params"])
    assert candidates == 6
    with RunClient(logged.run_uuid) as client:
        history = client.get_metrics()
        run = client.get_run()
        refs = {ref.name: ref for ref in client.get_artifacts_lineage()}
        table = json.loads(client.backend.store.read_bytes(refs["cv_results.json"].digest))
    assert history["best_cv_score"][-1].value == pytest.approx(search.best_score_)
    points = history["cv_mean_test_score"]
    assert [p.step for p in points] == list(range(candidates))
    assert [p.value for p in points] == pytest.approx(list(results["mean_test_score"]))
    assert [p.value for p in history["cv_rank_test_score"]] == list(results["rank_test_score"])
    assert len(history["cv_mean_fit_time"]) == candidates
    assert run.outputs["best_params"] == json.loads(json.dumps(search.best_params_))
    assert run.outputs["best_index"] == search.best_index_
    assert run.outputs["candidates"] == candidates
    assert run.params["param_grid"] == {"svc__C": [0.1, 1.0, 10.0], "svc__gamma": ["scale", 0.001]}
    assert run.params["estimator__svc__C"] == 1.0
    assert table["params"] == json.loads(json.dumps(results["params"]))
    assert table["mean_test_score"] == pytest.approx(list(results["mean_test_score"]))
    assert table["param_svc__C"] == [0.1, 0.1, 1.0, 1.0, 10.0, 10.0]
    # The refitted best estimator is what is scored on the evaluation data.
    assert logged.metrics["eval_accuracy"] == pytest.approx(search.score(x_test, y_test))


def test_randomized_search_with_distributions_and_several_scorers(iris: Split) -> None:
    x_train, x_test, y_train, y_test = iris
    search = RandomizedSearchCV(
        LogisticRegression(max_iter=1000),
        {"C": loguniform(1e-2, 1e1)},
        n_iter=3,
        cv=3,
        scoring=["accuracy", "f1_macro"],
        refit="accuracy",
        random_state=0,
    )
    planned = ensign_sklearn.metric_names(search, has_evaluation=True)
    assert {"best_cv_score", "cv_mean_test_accuracy", "cv_mean_test_f1_macro"} <= set(planned)

    logged = log_estimator(
        search,
        x_train,
        y_train,
        x_test,
        y_test,
        project="iris",
        promote="best_cv_score >= 0.8 and best(cv_mean_test_f1_macro) >= 0.8",
    )

    metrics = last_values(logged.run_uuid)
    assert set(metrics) <= set(planned)
    assert metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert logged.params["param_distributions"] == {"C": "loguniform(0.01, 10.0)"}
    assert logged.params["scoring"] == ["accuracy", "f1_macro"]
    assert logged.version is not None


# --- data digests -------------------------------------------------------------------------


def test_same_data_gives_the_same_digest_in_every_run_and_changed_data_another(
    iris: Split,
) -> None:
    x_train, _, y_train, _ = iris
    first = log_estimator(DecisionTreeClassifier(random_state=0), x_train, y_train, project="p")
    second = log_estimator(
        LogisticRegression(max_iter=500), x_train.copy(), y_train.copy(), project="p"
    )
    changed = x_train.copy()
    changed[0, 0] += 0.1
    third = log_estimator(DecisionTreeClassifier(random_state=0), changed, y_train, project="p")

    digests = [refs_of(r.run_uuid)["training_data"].digest for r in (first, second, third)]
    assert digests[0] == digests[1] == first.training_data.digest
    assert digests[2] != digests[0]


def test_data_digest_is_canonical_and_sensitive() -> None:
    array = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert data_digest(array) == data_digest(np.asfortranarray(array))
    assert data_digest(array) == data_digest(array.tolist())
    assert data_digest(array) != data_digest(array.astype(np.float32))
    assert data_digest(array) != data_digest(array.reshape(4, 3))
    assert data_digest(np.array(["a", "b"], dtype=object)) == data_digest(
        np.array(["a", "b"], dtype=object)
    )
    assert data_digest(np.array(["a", "b"], dtype=object)) != data_digest(
        np.array(["a", "c"], dtype=object)
    )

    from scipy import sparse

    matrix = sparse.random(20, 10, density=0.3, random_state=0, format="coo")
    assert data_digest(matrix.tocsr()) == data_digest(matrix.tocsc())
    assert data_digest(matrix.tocsr()) != data_digest(matrix.tocsr() * 2)


def test_dataframe_digest_covers_columns_index_and_values() -> None:
    frame = load_iris(as_frame=True).frame
    same = frame.copy()
    assert data_digest(frame) == data_digest(same)
    assert data_digest(frame) != data_digest(frame.rename(columns={"target": "label"}))
    assert data_digest(frame) != data_digest(frame.set_axis(frame.index + 1, axis=0))
    edited = frame.copy()
    edited.iloc[3, 1] = 0.0
    assert data_digest(frame) != data_digest(edited)
    series = frame["target"]
    assert data_digest(series) == data_digest(series.copy())
    assert data_digest(series) != data_digest(series.rename("label"))
    assert data_digest(series) != data_digest(series.to_numpy())


def test_digests_are_the_same_in_another_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "from sklearn.datasets import load_iris\n"
        "from ensign_sklearn import data_digest\n"
        "bunch = load_iris(as_frame=True)\n"
        "print(data_digest(bunch.data), data_digest(bunch.target), "
        "data_digest(bunch.data.to_numpy()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    bunch = load_iris(as_frame=True)
    expected = [
        data_digest(bunch.data),
        data_digest(bunch.target),
        data_digest(bunch.data.to_numpy()),
    ]
    assert done.stdout.split() == expected


def test_dataframe_training_data_records_columns_and_target() -> None:
    bunch = load_iris(as_frame=True)
    logged = log_estimator(
        DecisionTreeClassifier(random_state=0), bunch.data, bunch.target, project="iris"
    )
    summary = refs_of(logged.run_uuid)["training_data"].summary
    assert summary["type"] == "pandas.DataFrame"
    assert summary["columns"] == list(bunch.data.columns)
    assert summary["target"] == "target"
    assert summary["rows"] == 150
    assert summary["X_digest"] == data_digest(bunch.data)


def test_params_are_json_safe_and_the_same_in_every_process() -> None:
    search = GridSearchCV(
        make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=100)),
        {"logisticregression__C": [1.0, float("nan")]},
        scoring=accuracy_score,
        error_score=float("nan"),
    )
    params = ensign_sklearn.estimator_params(search)
    text = json.dumps(params, allow_nan=False)
    assert "0x" not in text
    assert params["scoring"] == "sklearn.metrics._classification.accuracy_score"
    assert params["estimator__functiontransformer__func"] == "numpy.log1p"
    assert params["param_grid"] == {"logisticregression__C": [1.0, "nan"]}
    assert params["error_score"] == "nan"
    assert params["estimator"] == "Pipeline"


# --- runs ---------------------------------------------------------------------------------


def test_logs_into_the_active_run_without_ending_it(iris: Split) -> None:
    x_train, x_test, y_train, y_test = iris
    with tracking.init(project="iris", name="mine") as run:
        logged = log_estimator(SVC(), x_train, y_train, x_test, y_test)
        assert logged.run_uuid == run.uuid
        assert not run.ended
        tracking.log_metrics(extra=1.0)
    record = run_record(run.uuid)
    assert record.status == "succeeded"
    assert record.name == "mine"
    assert "eval_accuracy" in last_values(run.uuid)


def test_logs_into_an_explicit_run_and_refuses_an_ended_one(iris: Split) -> None:
    x_train, _, y_train, _ = iris
    with tracking.init(project="iris") as run:
        log_estimator(SVC(), x_train, y_train, run=run)
    assert "train_accuracy" in last_values(run.uuid)
    with pytest.raises(RunEnded, match="has ended"):
        log_estimator(SVC(), x_train, y_train, run=run)


def test_an_already_fitted_estimator_is_logged_without_fitting(iris: Split) -> None:
    x_train, x_test, y_train, y_test = iris
    model = LogisticRegression(max_iter=500).fit(x_train, y_train)
    coefficients = model.coef_.copy()
    with pytest.raises(MetricNeverLogged, match="fit_time_s"):
        log_estimator(model, x_train, y_train, fit=False, promote="fit_time_s < 60")

    logged = log_estimator(model, x_train, y_train, x_test, y_test, fit=False, project="iris")

    np.testing.assert_array_equal(model.coef_, coefficients)
    assert "fit_time_s" not in last_values(logged.run_uuid)
    assert logged.metrics["eval_accuracy"] == pytest.approx(model.score(x_test, y_test))


# --- bad input ----------------------------------------------------------------------------


def test_a_promote_metric_never_logged_fails_before_fitting(iris: Split) -> None:
    x_train, _, y_train, _ = iris
    model = LogisticRegression(max_iter=500)
    with pytest.raises(MetricNeverLogged) as caught:
        log_estimator(model, x_train, y_train, project="iris", promote="eval_accuracy >= 0.9")
    message = str(caught.value)
    assert "'eval_accuracy'" in message
    assert "X_eval" in message
    assert "train_accuracy" in message  # the ones it does log are listed
    assert isinstance(caught.value, UnknownMetric)
    assert not hasattr(model, "coef_")  # never fitted
    assert not Path(".ensign").exists()  # no run was started

    with pytest.raises(MetricNeverLogged, match=r"'eval_accuracy'.*Ridge does not log it"):
        log_estimator(
            Ridge(),
            x_train,
            y_train,
            x_train,
            y_train,
            promote=Promotion(better_than="production", metric="eval_accuracy"),
        )


def test_bad_arguments_are_refused_with_a_clear_error(iris: Split) -> None:
    x_train, x_test, y_train, _ = iris
    with pytest.raises(ConfigurationError, match="X_eval was given without y_eval"):
        log_estimator(SVC(), x_train, y_train, x_test)
    with pytest.raises(ConfigurationError, match="promote must be a condition string"):
        log_estimator(SVC(), x_train, y_train, promote=0.9)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="promote needs log_model=True"):
        log_estimator(SVC(), x_train, y_train, promote="train_accuracy > 0", log_model=False)
    with pytest.raises(ConfigurationError, match="name must be"):
        log_estimator(SVC(), x_train, y_train, name="a/b")


class LockingClassifier(ClassifierMixin, BaseEstimator):
    """A classifier that picks up a lock while it fits: fine to fit, impossible to pickle."""

    def __init__(self, max_iter: int = 500) -> None:
        self.max_iter = max_iter

    def fit(self, x: Any, y: Any) -> LockingClassifier:
        self.model_ = LogisticRegression(max_iter=self.max_iter).fit(x, y)
        self.classes_ = self.model_.classes_
        self.lock_ = threading.Lock()
        return self

    def predict(self, x: Any) -> Any:
        return self.model_.predict(x)


def test_an_unpicklable_estimator_is_refused_before_fitting_and_the_run_stays_usable(
    iris: Split,
) -> None:
    x_train, _, y_train, _ = iris
    model = make_pipeline(FunctionTransformer(lambda v: v * 2), LogisticRegression(max_iter=500))
    with tracking.init(project="iris") as run:
        with pytest.raises(EstimatorNotSaved, match="cannot be pickled") as caught:
            log_estimator(model, x_train, y_train, run=run)
        assert "Pipeline" in str(caught.value)
        assert "lambda" in str(caught.value)
        assert not hasattr(model, "classes_")
        run.log_metrics(after=1.0)
    assert run_record(run.uuid).status == "succeeded"
    assert last_values(run.uuid) == {"after": 1.0}

    # Without a model file the same estimator can still be tracked.
    logged = log_estimator(model, x_train, y_train, project="iris", log_model=False)
    assert logged.model is None
    assert "model" not in refs_of(logged.run_uuid)


def test_an_estimator_that_becomes_unpicklable_in_fit_keeps_its_scores(iris: Split) -> None:
    x_train, x_test, y_train, y_test = iris
    with tracking.init(project="iris") as run:
        with pytest.raises(
            EstimatorNotSaved, match=r"LockingClassifier.*cannot be pickled.*_thread.lock"
        ):
            log_estimator(LockingClassifier(), x_train, y_train, x_test, y_test, run=run)
        run.log_metrics(after=2.0)
    assert run_record(run.uuid).status == "succeeded"
    metrics = last_values(run.uuid)
    assert "eval_accuracy" in metrics
    assert metrics["after"] == 2.0
    assert "model" not in refs_of(run.uuid)


class ExplodingClassifier(ClassifierMixin, BaseEstimator):
    """A classifier whose fit raises the exception it is given."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error

    def fit(self, x: Any, y: Any) -> ExplodingClassifier:
        assert self.error is not None
        raise self.error

    def predict(self, x: Any) -> Any:
        raise AssertionError("never fitted")


def test_a_fit_that_raises_fails_the_run_promotes_nothing_and_propagates_unchanged(
    iris: Split,
) -> None:
    x_train, x_test, y_train, y_test = iris
    error = RuntimeError("training diverged")
    with pytest.raises(RuntimeError) as caught:
        log_estimator(
            ExplodingClassifier(error),
            x_train,
            y_train,
            x_test,
            y_test,
            project="iris",
            promote="eval_accuracy >= 0",
        )
    assert caught.value is error

    with ProjectClient("iris") as client:
        (run,) = client.list_runs()
        assert client.list_model_versions() == []
    assert run.status == "failed"
    assert run.outputs["fit_error"] == "RuntimeError: training diverged"
    with RunClient(run.uuid) as client:
        assert client.get_promotions() == []
        assert {ref.name for ref in client.get_artifacts_lineage()} == {
            "training_data",
            "evaluation_data",
        }


def test_a_fit_that_raises_leaves_the_callers_run_to_the_caller(iris: Split) -> None:
    x_train, _, y_train, _ = iris
    error = ValueError("bad batch")
    with (
        pytest.raises(ValueError, match="bad batch") as caught,
        tracking.init(project="iris") as run,
    ):
        log_estimator(ExplodingClassifier(error), x_train, y_train)
    assert caught.value is error
    assert run_record(run.uuid).status == "failed"  # the block ended it so

    other = tracking.init(project="iris")
    with pytest.raises(ValueError, match="bad batch"):
        log_estimator(ExplodingClassifier(error), x_train, y_train, run=other)
    assert not other.ended  # still the caller's to use and to end
    other.log_metrics(retried=1.0)
    other.end("stopped")
    assert run_record(other.uuid).status == "stopped"
