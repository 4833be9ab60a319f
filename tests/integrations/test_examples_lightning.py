"""examples/lightning_digits.py runs as a newcomer would run it, and does what it says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ensign.client import ProjectClient

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lightning_digits.py"


@pytest.mark.slow
def test_lightning_example_promotes_the_better_model_and_stages_it(tmp_path: Path) -> None:
    tracking = tmp_path / "tracking"
    env = {**os.environ, "ENSIGN_TRACKING_URI": str(tracking)}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "mlp-16:" in out
    assert "promoted to model v1" in out
    assert "promoted to model v2" in out  # the wider model beats v1 in production
    assert "of production holder v1: true" in out
    assert "in production: v2" in out

    with ProjectClient("demo/digits-lightning", tracking_uri=tracking) as project:
        v1 = project.get_model_version("v1")
        v2 = project.get_model_version("v2")
        assert [c.type for c in v1.stage_conditions] == [
            "testing",
            "staging",
            "production",
            "disabled",
        ]
        assert v2.stage == "production"
        assert [c.type for c in v2.stage_conditions] == ["testing", "staging", "production"]
        (checkpoint,) = v2.manifest
        assert checkpoint.startswith("model/")
        assert checkpoint.endswith(".ckpt")
        lineage = project.get_model_version_lineage("v2")
    assert {(r.name, r.kind, r.is_input) for r in lineage} == {
        ("digits", "data", True),
        ("model", "model", False),
    }
