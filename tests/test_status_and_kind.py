from __future__ import annotations

from pathlib import Path

import pytest

from ensign import tracking
from ensign.client import RunClient
from ensign.errors import BackgroundError, ConfigurationError


def test_an_unknown_end_status_is_refused_and_the_run_stays_usable(tracking_dir: Path) -> None:
    run = tracking.init(project="p", tracking_uri=tracking_dir)
    with pytest.raises(ConfigurationError, match=r"unknown run status 'done'.*succeeded"):
        run.end("done")
    run.log_metric("loss", 0.5)
    run.end()
    assert RunClient(run.uuid, tracking_uri=tracking_dir).get_run().status == "succeeded"


def test_an_unknown_version_kind_lists_the_valid_ones(tracking_dir: Path) -> None:
    run = tracking.init(project="p", tracking_uri=tracking_dir)
    with pytest.raises(
        ConfigurationError, match=r"unknown version kind 'dataset'.*artifact, model"
    ):
        run.backend.registry.list_versions("p", "dataset")
    run.end()


def test_a_failure_reported_by_flush_still_ends_the_run_failed(
    tracking_dir: Path, tmp_path: Path
) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"weights")
    run = tracking.init(project="p", tracking_uri=tracking_dir)
    run.log_artifact_ref(weights, hash="0" * 64)  # a digest the bytes do not have
    with pytest.raises(BackgroundError):
        run.flush()
    run.end()  # nothing left to raise, but work was lost
    assert RunClient(run.uuid, tracking_uri=tracking_dir).get_run().status == "failed"
