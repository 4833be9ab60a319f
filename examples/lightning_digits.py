"""Train a small MLP on the digits with Lightning; promote it only when it beats production.

Run it with ``python examples/lightning_digits.py`` (after ``make test`` or the README's
install). Each model is tracked by ``EnsignLogger``: hyperparameters, metrics, the data
it read, its best and last checkpoints. When a fit ends, the best checkpoint becomes a
model version if its ``val_acc`` reaches 0.8 and beats the model in production; the script
then stages the new version (``staging``, then ``production``, retiring the previous one) with
``ProjectClient``.

Everything lands in ``./.ensign`` unless ``ENSIGN_TRACKING_URI`` says otherwise. Run it
twice: the second time the same models no longer beat production, and nothing is promoted.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from ensign_lightning import EnsignLogger
from lightning.pytorch import LightningDataModule, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from sklearn.datasets import load_digits
from torch.nn import functional
from torch.utils.data import DataLoader, TensorDataset

from ensign import Promotion, Stages
from ensign.client import ProjectClient, RunClient
from ensign.storage.hashing import sha256_bytes

PROJECT = "demo/digits-lightning"


class Digits(LightningDataModule):
    """scikit-learn's 1,797 digits: 1,500 to train on, the rest to validate."""

    def setup(self, stage: str) -> None:
        digits = load_digits()
        self.x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
        self.y = torch.tensor(digits.target)

    def train_dataloader(self) -> DataLoader[Any]:
        data = TensorDataset(self.x[:1500], self.y[:1500])
        return DataLoader(data, batch_size=64, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(TensorDataset(self.x[1500:], self.y[1500:]), batch_size=300)

    def ensign_data_refs(self) -> list[dict[str, Any]]:
        """What EnsignLogger logs as the run's input data (same bytes, same digest)."""
        raw = self.x.numpy().tobytes()
        return [{"name": "digits", "hash": sha256_bytes(raw), "summary": {"rows": len(self.x)}}]


class MLP(LightningModule):
    def __init__(self, hidden: int, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
        )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        x, y = batch
        loss = functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
        x, y = batch
        out = self.net(x)
        self.log("val_loss", functional.cross_entropy(out, y))
        self.log("val_acc", (out.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams["lr"])


def train(name: str, hidden: int, epochs: int, workdir: Path) -> EnsignLogger:
    seed_everything(0, verbose=False)
    logger = EnsignLogger(
        project=PROJECT,
        name=name,
        log_model=True,  # the best and the last checkpoint become refs of the run
        promote=Promotion(
            when="val_acc >= 0.8",
            better_than="production",  # no production model yet: the comparison holds
            metric="val_acc",
            description=f"MLP with {hidden} hidden units",
        ),
    )
    trainer = Trainer(
        max_epochs=epochs,
        logger=logger,
        callbacks=[ModelCheckpoint(dirpath=workdir / name, monitor="val_acc", mode="max")],
        accelerator="cpu",
        devices=1,
        log_every_n_steps=5,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(MLP(hidden), datamodule=Digits())
    return logger


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ensign-lightning-"))
    with ProjectClient(PROJECT) as project:
        for name, hidden, epochs in (("mlp-16", 16, 2), ("mlp-64", 64, 4)):
            logger = train(name, hidden, epochs, workdir)
            version = logger.promoted_version
            with RunClient(str(logger.run_id)) as run:
                accuracy = run.get_metrics(["val_acc"])["val_acc"][-1].value
                decision = run.get_promotions()[-1]
            print(f"{name}: run {logger.run_id}, val_acc {accuracy:.3f}")
            print(f"  decision: {'; '.join(decision.reasons)}")
            if version is None:
                print("  not promoted")
                continue
            files = ", ".join(version.manifest)
            print(f"  promoted to model {version.name} ({files})")
            # A real pipeline would run its checks between these two stages.
            project.stage_model_version(
                version.name, Stages.STAGING, reason="AutoPromoted", message="beat production"
            )
            for previous in project.list_model_versions(query="stage:production"):
                project.stage_model_version(
                    previous.name, Stages.DISABLED, reason="Superseded", message=version.name
                )
            project.stage_model_version(
                version.name, Stages.PRODUCTION, reason="Checked", message="example: no checks"
            )
            stages = " -> ".join(c.type for c in project.get_model_version_stages(version.name))
            print(f"  stages: {stages}")
        current = [v.name for v in project.list_model_versions(query="stage:production")]
        print(f"in production: {', '.join(current) or 'nothing'}")


if __name__ == "__main__":
    main()
