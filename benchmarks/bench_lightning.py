"""What a logger costs a Lightning fit: no logger, CSVLogger, MLFlowLogger and EnsignLogger.

The same small MLP on scikit-learn's digits, the same ModelCheckpoint (a checkpoint every
epoch, all kept), a fixed number of steps, metrics logged at every step. A logger that does
nothing shows what Lightning's own logging path costs, whatever the logger. MLflow and ensign
also log every checkpoint (``log_model="all"``). Each round times ``trainer.fit`` (each
logger's finalize included: uploads, run end) once per variant, back to back; the ratio
printed is the median over ``--repeats`` rounds of a variant's time over the time without a
logger in the same round, so that a neighbour's load that comes and goes cancels out. Each
logger's store (database, artifact folder) is created by a warm-up fit and then reused, as
a user's store is.

    python benchmarks/bench_lightning.py [--steps 940] [--repeats 7]

MLflow comes with ``pip install -e '.[bench]'`` (``make bench``); without it that row is
skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from ensign_lightning import EnsignLogger
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger
from sklearn.datasets import load_digits
from torch.nn import functional
from torch.utils.data import DataLoader, TensorDataset

BATCH_SIZE = 32
BATCHES_PER_EPOCH = 47  # the 1,500 training digits, 32 at a time
TARGET = 1.03


class MLP(LightningModule):
    def __init__(self, hidden: int = 64, lr: float = 0.01) -> None:
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


def loaders() -> tuple[DataLoader[Any], DataLoader[Any]]:
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    train = TensorDataset(x[:1500], y[:1500])
    val = TensorDataset(x[1500:], y[1500:])
    generator = torch.Generator().manual_seed(0)
    return (
        DataLoader(train, batch_size=BATCH_SIZE, shuffle=True, generator=generator),
        DataLoader(val, batch_size=300),
    )


def fit_seconds(make_logger: Callable[[Path], Logger | bool], steps: int, stores: Path) -> float:
    """Return the wall time of one fit."""
    seed_everything(0, verbose=False)
    with tempfile.TemporaryDirectory(prefix="ensign-bench-") as folder:
        root = Path(folder)
        trainer = Trainer(
            max_steps=steps,
            logger=make_logger(stores),
            callbacks=[
                ModelCheckpoint(
                    dirpath=root / "checkpoints",
                    monitor="val_acc",
                    mode="max",
                    save_top_k=-1,
                    every_n_epochs=1,
                )
            ],
            log_every_n_steps=1,
            accelerator="cpu",
            devices=1,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root,
        )
        train, val = loaders()
        model = MLP()
        start = time.perf_counter()
        trainer.fit(model, train, val)
        elapsed = time.perf_counter() - start
        assert trainer.global_step == steps
    return elapsed


class NullLogger(Logger):
    """A logger that drops everything: what Lightning's own logging path costs."""

    @property
    def name(self) -> str:
        return "null"

    @property
    def version(self) -> str:
        return "0"

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


def variants() -> dict[str, Callable[[Path], Logger | bool]]:
    found: dict[str, Callable[[Path], Logger | bool]] = {
        "no logger": lambda stores: False,
        "a logger that does nothing": lambda stores: NullLogger(),
        "CSVLogger": lambda stores: CSVLogger(stores / "csv"),
    }
    if importlib.util.find_spec("mlflow") is not None:
        from lightning.pytorch.loggers import MLFlowLogger

        found["MLFlowLogger(log_model='all')"] = lambda stores: MLFlowLogger(
            experiment_name="bench",
            tracking_uri=f"sqlite:///{stores / 'mlflow.db'}",
            artifact_location=(stores / "mlartifacts").as_uri(),
            log_model="all",
        )
    found["EnsignLogger(log_model='all')"] = lambda stores: EnsignLogger(
        project="bench", tracking_uri=stores / "ensign", log_model="all"
    )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps", type=int, default=20 * BATCHES_PER_EPOCH, help="optimizer steps per fit"
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed fits per variant")
    args = parser.parse_args()

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")  # deprecation chatter from Lightning and MLflow
    for name in ("lightning", "lightning.pytorch", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)

    chosen = variants()
    print(
        f"{args.steps} steps ({BATCHES_PER_EPOCH} per epoch, a checkpoint each epoch), "
        f"metrics logged every step, {args.repeats} rounds"
    )
    stores = Path(tempfile.mkdtemp(prefix="ensign-bench-stores-"))
    # Warm-up: imports, page cache, and each logger's store, created once as a user's is
    # (creating a database is a one-off cost, not a cost of logging a fit).
    for make in chosen.values():
        fit_seconds(make, BATCHES_PER_EPOCH, stores)
    names = list(chosen)
    wall: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.repeats):
        # Each round times every variant back to back, starting with a different one.
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            wall[name].append(fit_seconds(chosen[name], args.steps, stores))
    shutil.rmtree(stores, ignore_errors=True)

    base = wall["no logger"]
    print(f"{'variant':32} {'median s':>9} {'min s':>7} {'ratio':>7} {'of mins':>8}")
    for name in names:
        # The median, over rounds, of the time against no logger in the same round: a
        # neighbour's load that comes and goes moves both and cancels out.
        paired = statistics.median(t / b for t, b in zip(wall[name], base, strict=True))
        print(
            f"{name:32} {statistics.median(wall[name]):9.3f} {min(wall[name]):7.3f}"
            f" {paired:6.3f}x {min(wall[name]) / min(base):7.3f}x"
        )
    ours = statistics.median(t / b for t, b in zip(wall[names[-1]], base, strict=True))
    verdict = "meets" if ours <= TARGET else "misses"
    print(f"EnsignLogger: {ours:.3f}x no logger ({verdict} the {TARGET:.2f}x target)")


if __name__ == "__main__":
    main()
