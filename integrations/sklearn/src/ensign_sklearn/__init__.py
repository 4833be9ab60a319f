"""ensign for scikit-learn: track fits, their data and scores; promote a model when it earns it.

Two ways in::

    import ensign_sklearn

    # explicit: fit, log, and promote when the condition holds
    logged = ensign_sklearn.log_estimator(
        GridSearchCV(SVC(), {"C": [1, 10]}), X_train, y_train, X_test, y_test,
        project="digits", promote="best_cv_score >= 0.95 and eval_accuracy >= 0.95",
    )
    logged.version            # the model version, or None

    # automatic: every (outermost) fit is logged until autolog(disable=True)
    ensign_sklearn.autolog(project="digits")
    model.fit(X, y)

Metric names are listed in :mod:`ensign_sklearn.scores`; :func:`metric_names` gives those
of one estimator.
"""

from ensign_sklearn.autolog import autolog, is_autologging
from ensign_sklearn.core import (
    CV_RESULTS,
    EVALUATION_DATA,
    MODEL_FILE,
    TRAINING_DATA,
    DataRef,
    LoggedEstimator,
    last_logged,
    log_estimator,
)
from ensign_sklearn.data import data_digest, dataset_digest
from ensign_sklearn.errors import EstimatorNotSaved, MetricNeverLogged
from ensign_sklearn.params import estimator_params
from ensign_sklearn.scores import metric_names

__version__ = "0.1.0"

__all__ = [
    "CV_RESULTS",
    "EVALUATION_DATA",
    "MODEL_FILE",
    "TRAINING_DATA",
    "DataRef",
    "EstimatorNotSaved",
    "LoggedEstimator",
    "MetricNeverLogged",
    "__version__",
    "autolog",
    "data_digest",
    "dataset_digest",
    "estimator_params",
    "is_autologging",
    "last_logged",
    "log_estimator",
    "metric_names",
]
