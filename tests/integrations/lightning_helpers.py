"""A small MLP on scikit-learn's digits, shared by the Lightning tests.

It lives in its own module (on ``sys.path``) so that ``ddp_spawn`` worker processes can
unpickle these classes by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from sklearn.datasets import load_digits
from torch.nn import functional
from torch.utils.data import DataLoader, TensorDataset

from ensign.storage.hashing import sha256_bytes

_DIGITS = load_digits()
FEATURES = torch.tensor(_DIGITS.data, dtype=torch.float32) / 16.0
TARGETS = torch.tensor(_DIGITS.target)
DATA_DIGEST = sha256_bytes(FEATURES.numpy().tobytes())


class DigitsData(LightningDataModule):
    """1,500 digits to train on, the rest to validate and test; exposes its data ref."""

    def __init__(self, batch_size: int = 64) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage: str) -> None:
        self.train_set = TensorDataset(FEATURES[:1500], TARGETS[:1500])
        self.val_set = TensorDataset(FEATURES[1500:], TARGETS[1500:])

    def train_dataloader(self) -> DataLoader[Any]:
        generator = torch.Generator().manual_seed(0)
        return DataLoader(self.train_set, self.batch_size, shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.val_set, batch_size=150)

    def test_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.val_set, batch_size=150)

    def ensign_data_refs(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "digits",
                "content": FEATURES.numpy().tobytes(),
                "summary": {"rows": len(FEATURES), "source": "sklearn.datasets.load_digits"},
            }
        ]


class MLP(LightningModule):
    """64 → hidden → 10, trained with Adam; logs train_loss, val_loss, val_acc, test_acc."""

    def __init__(
        self,
        hidden: int = 32,
        lr: float = 0.02,
        optimizer: dict[str, Any] | None = None,
    ) -> None:
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

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], prefix: str) -> None:
        x, y = batch
        out = self.net(x)
        self.log(f"{prefix}_loss", functional.cross_entropy(out, y), sync_dist=True)
        self.log(f"{prefix}_acc", (out.argmax(1) == y).float().mean(), sync_dist=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams["lr"])


class Explode(Callback):
    """Raise ``error`` when training reaches ``step``."""

    def __init__(self, step: int, error: BaseException) -> None:
        self.step = step
        self.error = error

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise self.error


def checkpointing(folder: Path | str | None, **options: Any) -> ModelCheckpoint:
    """The ModelCheckpoint the tests use: best val_acc, plus last."""
    settings: dict[str, Any] = {"monitor": "val_acc", "mode": "max", "save_last": True}
    settings.update(options)
    return ModelCheckpoint(dirpath=None if folder is None else str(folder), **settings)


def trainer(root: Path, *, callbacks: list[Callback] | None = None, **options: Any) -> Trainer:
    """A quick CPU trainer: few batches, logging every step, no progress bar."""
    settings: dict[str, Any] = {
        "max_epochs": 2,
        "accelerator": "cpu",
        "devices": 1,
        "limit_train_batches": 4,
        "limit_val_batches": 1,
        "limit_test_batches": 1,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": str(root),
        "callbacks": callbacks or [],
    }
    settings.update(options)
    return Trainer(**settings)
