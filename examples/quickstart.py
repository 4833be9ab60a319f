"""Train a classifier, track it, promote it when it is good enough, show the version.

Run it with ``make demo`` (or ``python examples/quickstart.py``). Everything lands in
``./.ensign`` (a SQLite file and a folder of content-addressed blobs) unless
``ENSIGN_TRACKING_URI`` says otherwise.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from ensign import tracking
from ensign.client import ProjectClient, RunClient
from ensign.storage.hashing import sha256_bytes

PROJECT = "demo/digits"
ACCURACY_BAR = 0.9


def main() -> None:
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=0
    )
    workdir = Path(tempfile.mkdtemp(prefix="ensign-quickstart-"))

    with tracking.init(project=PROJECT, name="logreg", tags=["quickstart"]) as run:
        data = np.ascontiguousarray(digits.data)
        tracking.log_data_ref(
            "digits",
            hash=sha256_bytes(data.tobytes()),
            summary={"rows": int(data.shape[0]), "features": int(data.shape[1])},
        )
        params = {"C": 0.5, "max_iter": 2000}
        tracking.log_params(**params, test_size=0.25)

        model = LogisticRegression(**params)
        for epoch, size in enumerate((200, 600, len(x_train)), start=1):
            model.fit(x_train[:size], y_train[:size])
            tracking.log_metrics(
                step=epoch,
                train_accuracy=model.score(x_train[:size], y_train[:size]),
                test_accuracy=model.score(x_test, y_test),
            )

        model_path = workdir / "model.joblib"
        joblib.dump(model, model_path)
        tracking.log_model_ref(model_path, name="model", framework="scikit-learn")

        version = tracking.promote_to_model_version(
            when=f"test_accuracy >= {ACCURACY_BAR}",
            description="logistic regression on digits",
            tags=["quickstart"],
        )

    decisions = RunClient(run.uuid).get_promotions()
    print(f"run {run.uuid}: {'; '.join(decisions[-1].reasons)}")
    if version is None:
        print("not promoted: the accuracy bar was not met")
        return
    print(f"promoted {PROJECT} model version {version.name} (stage {version.stage})")
    for path, entry in version.manifest.items():
        print(f"  file    {path}  sha256 {entry['digest'][:12]}  {entry['size']} bytes")
    with ProjectClient(PROJECT) as client:
        for ref in client.get_model_version_lineage(version.name):
            direction = "input " if ref.is_input else "output"
            digest = (ref.digest or "-")[:12]
            print(f"  {direction}  {ref.name:<8} kind={ref.kind:<6} sha256 {digest}")


if __name__ == "__main__":
    main()
