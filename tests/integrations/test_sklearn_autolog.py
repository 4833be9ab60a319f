"""ensign_sklearn.autolog: every outermost fit logged, reversibly, with promotion."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ensign_sklearn
import joblib
import pytest
from ensign_sklearn import MetricNeverLogged, autolog
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_digits, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.model_selection._search import BaseSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.svm._base import BaseLibSVM

from ensign import Promotion, tracking
from ensign.client import ProjectClient, RunClient
from ensign.errors import ConfigurationError, InvalidCondition, InvalidName


@pytest.fixture(autouse=True)
def autolog_off() -> Iterator[None]:
    yield
    autolog(disable=True)


@pytest.fixture(scope="module")
def iris() -> tuple[Any, Any]:
    return load_iris(return_X_y=True)  # type: ignore[no-any-return]


def runs_of(project: str) -> list[Any]:
    if not Path(".ensign").exists():
        return []
    with ProjectClient(project) as client:
        try:
            return client.list_runs()
        except LookupError:  # the project was never created
            return []


def metrics_of(run_uuid: str) -> dict[str, list[Any]]:
    with RunClient(run_uuid) as client:
        return client.get_metrics()


def test_a_fit_is_logged_into_a_run_of_its_own(iris: tuple[Any, Any]) -> None:
    x, y = iris
    autolog(project="auto")
    model = LogisticRegression(C=2.0, max_iter=500)

    returned = model.fit(X=x, y=y)

    assert returned is model
    (run,) = runs_of("auto")
    assert run.name == "LogisticRegression"
    assert run.status == "succeeded"
    assert run.params["C"] == 2.0
    metrics = metrics_of(run.uuid)
    assert metrics["train_accuracy"][-1].value == pytest.approx(model.score(x, y))
    assert "fit_time_s" in metrics
    with RunClient(run.uuid) as client:
        refs = {ref.name: ref for ref in client.get_artifacts_lineage()}
    assert refs["training_data"].digest == ensign_sklearn.dataset_digest(
        ensign_sklearn.data_digest(x), ensign_sklearn.data_digest(y)
    )
    assert refs["model"].kind == "model"
    logged = ensign_sklearn.last_logged()
    assert logged is not None
    assert logged.run_uuid == run.uuid


def test_nested_fits_are_logged_once_for_the_outermost_fit() -> None:
    x, y = load_digits(return_X_y=True)
    autolog(project="auto")
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)),
        {"logisticregression__C": [0.05, 0.5]},
        cv=3,
    )

    search.fit(x, y)

    (run,) = runs_of("auto")  # not one per pipeline, scaler or classifier fit
    assert run.name == "GridSearchCV"
    metrics = metrics_of(run.uuid)
    assert metrics["best_cv_score"][-1].value == pytest.approx(search.best_score_)
    assert [p.step for p in metrics["cv_mean_test_score"]] == [0, 1]

    make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x[:300], y[:300])
    assert sorted(r.name for r in runs_of("auto")) == ["GridSearchCV", "Pipeline"]


def test_fits_on_joblib_threads_inside_a_logged_fit_are_not_logged(
    iris: tuple[Any, Any],
) -> None:
    x, y = iris
    autolog(project="auto")
    search = GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.1, 1.0]}, cv=3, n_jobs=2)
    with joblib.parallel_backend("threading", n_jobs=2):
        search.fit(x, y)
    assert [r.name for r in runs_of("auto")] == ["GridSearchCV"]


def test_disable_restores_every_original_fit_exactly(iris: tuple[Any, Any]) -> None:
    x, y = iris
    classes = (LogisticRegression, Pipeline, BaseSearchCV, StandardScaler, BaseLibSVM)
    originals = {cls: cls.__dict__["fit"] for cls in classes}
    signature = inspect.signature(LogisticRegression.fit)
    assert "__init_subclass__" not in BaseEstimator.__dict__

    autolog(project="auto")
    # Again: the settings are replaced (a class local to a function cannot be pickled, so no
    # model files), nothing is wrapped twice.
    autolog(project="auto", log_model=False)
    assert ensign_sklearn.is_autologging()
    for cls, original in originals.items():
        assert cls.__dict__["fit"] is not original
        assert cls.__dict__["fit"].__wrapped__ is original
    assert inspect.signature(LogisticRegression.fit) == signature
    assert SVC.fit is BaseLibSVM.__dict__["fit"]  # inherited: patched once, on its owner
    assert "fit" not in GridSearchCV.__dict__

    class LateClassifier(ClassifierMixin, BaseEstimator):
        def fit(self, x: Any, y: Any) -> LateClassifier:
            self.classes_ = sorted(set(y))
            return self

        def predict(self, x: Any) -> Any:
            return [self.classes_[0]] * len(x)

    late_fit = LateClassifier.__dict__["fit"]
    assert late_fit.__wrapped__ is not None  # a class defined while autolog is on is wrapped
    LateClassifier().fit(x, y)
    assert [r.name for r in runs_of("auto")] == ["LateClassifier"]

    autolog(disable=True)
    assert not ensign_sklearn.is_autologging()
    for cls, original in originals.items():
        assert cls.__dict__["fit"] is original
    assert LateClassifier.__dict__["fit"] is late_fit.__wrapped__
    assert "__init_subclass__" not in BaseEstimator.__dict__
    LogisticRegression(max_iter=500).fit(x, y)
    LateClassifier().fit(x, y)
    assert len(runs_of("auto")) == 1  # nothing logged after disable


def test_promotes_a_predictor_when_the_condition_holds(iris: tuple[Any, Any]) -> None:
    x, y = iris
    autolog(project="auto", promote=Promotion(when="train_accuracy >= 0.9", stage="staging"))

    StandardScaler().fit(x)  # a transformer logs no scores: tracked, never promoted
    model = LogisticRegression(max_iter=500).fit(x, y)

    with ProjectClient("auto") as client:
        (version,) = client.list_model_versions()
        lineage = {ref.name for ref in client.get_model_version_lineage(version.name)}
    assert version.stage == "staging"
    assert lineage == {"training_data", "model"}
    runs = {r.name: r for r in runs_of("auto")}
    assert version.run == runs["LogisticRegression"].uuid
    assert not runs["StandardScaler"].is_promoted
    assert model.score(x, y) >= 0.9


def test_a_promote_metric_that_is_never_logged_fails_before_the_fit(
    iris: tuple[Any, Any],
) -> None:
    x, y = iris
    autolog(project="auto", promote="eval_accuracy >= 0.9")
    model = LogisticRegression(max_iter=500)
    with pytest.raises(MetricNeverLogged, match=r"'eval_accuracy'.*train_accuracy"):
        model.fit(x, y)
    assert not hasattr(model, "coef_")
    assert runs_of("auto") == []


class ExplodingClassifier(ClassifierMixin, BaseEstimator):
    """A classifier whose fit raises the exception it is given."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error

    def fit(self, x: Any, y: Any) -> ExplodingClassifier:
        assert self.error is not None
        raise self.error

    def predict(self, x: Any) -> Any:
        raise AssertionError("never fitted")


def test_a_fit_that_raises_fails_its_run_and_propagates_unchanged(
    iris: tuple[Any, Any],
) -> None:
    x, y = iris
    autolog(project="auto", promote="train_accuracy >= 0")
    error = ArithmeticError("loss is nan")
    with pytest.raises(ArithmeticError) as caught:
        ExplodingClassifier(error).fit(x, y)
    assert caught.value is error
    (run,) = runs_of("auto")
    assert run.status == "failed"
    assert run.outputs["fit_error"] == "ArithmeticError: loss is nan"
    with ProjectClient("auto") as client:
        assert client.list_model_versions() == []


def test_fits_log_into_the_active_run(iris: tuple[Any, Any]) -> None:
    x, y = iris
    autolog(project="elsewhere")
    with tracking.init(project="mine") as run:
        LogisticRegression(max_iter=500).fit(x, y)
        assert not run.ended
    assert [r.uuid for r in runs_of("mine")] == [run.uuid]
    assert runs_of("elsewhere") == []
    assert "train_accuracy" in metrics_of(run.uuid)


def test_bad_settings_are_refused_and_leave_fit_alone() -> None:
    original = LogisticRegression.__dict__["fit"]
    with pytest.raises(InvalidCondition, match="column"):
        autolog(promote="train_accuracy >=")
    with pytest.raises(InvalidName, match="invalid project key"):
        autolog(project="no spaces please")
    with pytest.raises(ConfigurationError, match="promote needs log_model=True"):
        autolog(promote="train_accuracy > 0.5", log_model=False)
    assert not ensign_sklearn.is_autologging()
    assert LogisticRegression.__dict__["fit"] is original
