"""Grid-search a classifier on digits; promote it to a model version when the CV score holds.

Run it with ``python examples/sklearn_search.py`` (after ``make`` has installed
``integrations/sklearn``). Everything lands in ``./.ensign`` unless ``ENSIGN_TRACKING_URI``
says otherwise. Run it twice: both runs log the same ``training_data`` digest, and the
second is not promoted, since it does not beat the version it put in ``staging``.
"""

from __future__ import annotations

import ensign_sklearn
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ensign import Promotion
from ensign.client import ProjectClient

PROJECT = "demo/digits-search"
CV_BAR = 0.95


def main() -> None:
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    search = GridSearchCV(
        make_pipeline(StandardScaler(), SVC()),
        {"svc__C": [1.0, 10.0], "svc__gamma": ["scale", 0.001]},
        cv=3,
    )
    promotion = Promotion(
        # The CV score must hold, and the refitted model must confirm it on held-out data.
        when=f"best_cv_score >= {CV_BAR} and eval_accuracy >= {CV_BAR}",
        # ... and beat the model now in staging (no holder yet: the comparison holds).
        better_than="staging",
        metric="best_cv_score",
        stage="staging",
        description="scaled RBF SVC, grid-searched on digits",
    )
    logged = ensign_sklearn.log_estimator(
        search, x_train, y_train, x_test, y_test, project=PROJECT, promote=promotion
    )

    print(f"run {logged.run_uuid}")
    print(f"  best params   {search.best_params_}")
    print(f"  best_cv_score {logged.metrics['best_cv_score']:.4f}")
    print(f"  eval_accuracy {logged.metrics['eval_accuracy']:.4f}")
    if logged.decision is not None:
        for reason in logged.decision.reasons:
            print(f"  - {reason}")
    version = logged.version
    if version is None:
        print("not promoted")
        return
    print(f"promoted {PROJECT} model version {version.name} (stage {version.stage})")
    with ProjectClient(PROJECT) as client:
        for ref in client.get_model_version_lineage(version.name):
            direction = "input " if ref.is_input else "output"
            digest = (ref.digest or "-")[:12]
            print(f"  {direction}  {ref.name:<16} kind={ref.kind:<5} sha256 {digest}")


if __name__ == "__main__":
    main()
