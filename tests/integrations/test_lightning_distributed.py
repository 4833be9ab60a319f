"""Distributed training: only global rank zero writes: two processes, one run, one version."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ensign.client import ProjectClient, RunClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ensign_lightning import EnsignLogger
from lightning_helpers import MLP, DigitsData, checkpointing, trainer

pytestmark = [
    pytest.mark.slow,
    # Lightning 2.6 calls torch's LeafSpec(), which torch 2.13 deprecates; not ours to fix.
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated"),
]


def test_ddp_spawn_on_two_processes_makes_one_run_and_one_version(
    tmp_path: Path, tracking_dir: Path
) -> None:
    uri = str(tracking_dir)
    logger = EnsignLogger(
        project="digits", tracking_uri=uri, log_model=True, promote="val_acc >= 0"
    )
    fit = trainer(
        tmp_path,
        logger=logger,
        callbacks=[checkpointing(tmp_path / "ckpt")],
        strategy="ddp_spawn",
        devices=2,
    )
    fit.fit(MLP(), datamodule=DigitsData())

    with ProjectClient("digits", tracking_uri=uri) as projects:
        (run,) = projects.list_runs()
        (version,) = projects.list_model_versions()
    assert run.status == "succeeded"
    assert (version.name, version.run) == ("v1", run.uuid)
    with RunClient(run.uuid, tracking_uri=uri) as client:
        metrics = client.get_metrics()
        refs = client.get_artifacts_lineage()
        (decision,) = client.get_promotions()
    assert decision.promoted
    # each rank trains on half the data; rank zero alone logs, once per step
    steps = [p.step for p in metrics["train_loss"]]
    assert steps == list(range(8))
    assert {r.name for r in refs if r.kind == "checkpoint"} == {
        Path(version.content["checkpoint"]["path"]).name,
        "last.ckpt",
    }
