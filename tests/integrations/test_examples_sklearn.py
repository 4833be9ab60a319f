"""examples/sklearn_search.py runs as a newcomer runs it, and promotes its grid search."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ensign.client import ProjectClient, RunClient

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sklearn_search.py"


def run_example(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENSIGN_")}
    return subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLE)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_sklearn_search_example_promotes_once_then_holds(tmp_path: Path) -> None:
    first = run_example(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "promoted demo/digits-search model version v1 (stage staging)" in first.stdout
    assert "input   training_data" in first.stdout
    assert "output  model" in first.stdout

    with ProjectClient("demo/digits-search", tracking_uri=tmp_path / ".ensign") as client:
        (version,) = client.list_model_versions()
        lineage = {ref.name: ref for ref in client.get_model_version_lineage("v1")}
    assert version.stage == "staging"
    assert set(lineage) == {"training_data", "evaluation_data", "model"}
    with RunClient(version.run, tracking_uri=tmp_path / ".ensign") as client:
        metrics = client.get_metrics(["best_cv_score"])
    assert metrics["best_cv_score"][-1].value >= 0.95

    # The same search again does not beat the version in staging: nothing new is promoted.
    second = run_example(tmp_path)
    assert second.returncode == 0, second.stderr
    assert "not promoted" in second.stdout
    assert "of staging holder v1: false" in second.stdout
    with ProjectClient("demo/digits-search", tracking_uri=tmp_path / ".ensign") as client:
        assert [v.name for v in client.list_model_versions()] == ["v1"]
