"""EnsignLogger and EnsignCallback on real fits: a small MLP trained on scikit-learn's digits."""

from __future__ import annotations

import signal
import sys
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.loggers import CSVLogger

from ensign import Promotion, Stages
from ensign.backend import open_backend
from ensign.client import ProjectClient, RunClient
from ensign.errors import ConfigurationError, InvalidCondition, NotFound
from ensign.storage.hashing import sha256_file
from ensign.tracking.run import Run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ensign_lightning import (
    MODEL_REF,
    STAGING_FOLDER,
    EnsignCallback,
    EnsignLogger,
    MissingPromotionMetric,
    flatten_hyperparams,
)
from lightning_helpers import (  # found through the path set just above
    DATA_DIGEST,
    MLP,
    DigitsData,
    Explode,
    checkpointing,
    trainer,
)

pytestmark = [
    # Lightning 2.6 calls torch's LeafSpec(), which torch 2.13 deprecates; not ours to fix.
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated"),
]

PROJECT = "digits"


@pytest.fixture(autouse=True)
def _seeded() -> None:
    seed_everything(0, verbose=False)
    torch.set_num_threads(1)  # two cores, shared: threads only fight each other


@pytest.fixture
def uri(tracking_dir: Path) -> str:
    return str(tracking_dir)


def run_of(uri: str, run_id: str | None) -> RunClient:
    assert run_id is not None
    return RunClient(run_id, tracking_uri=uri)


# what a fit records ------------------------------------------------------------------------


def test_logger_records_params_metrics_data_and_test_metrics(tmp_path: Path, uri: str) -> None:
    logger = EnsignLogger(project=PROJECT, tracking_uri=uri, name="mlp", tags=["lightning"])
    model = MLP(hidden=16, optimizer={"name": "adam", "betas": (0.9, 0.99)})
    fit = trainer(tmp_path, logger=logger, callbacks=[checkpointing(tmp_path / "ckpt")])
    fit.fit(model, datamodule=DigitsData())
    fit.test(model, datamodule=DigitsData())

    assert logger.name == PROJECT
    assert logger.version == logger.run_id
    with run_of(uri, logger.run_id) as client:
        run = client.get_run()
        metrics = client.get_metrics()
        lineage = client.get_artifacts_lineage()
    assert (run.status, run.name, run.tags) == ("succeeded", "mlp", ["lightning"])
    assert run.params == {
        "hidden": 16,
        "lr": 0.02,
        "optimizer/name": "adam",
        "optimizer/betas": [0.9, 0.99],
    }
    assert [p.step for p in metrics["train_loss"]] == list(range(8))
    assert [p.step for p in metrics["val_acc"]] == [3, 7]
    assert 0.0 <= metrics["val_acc"][-1].value <= 1.0
    assert "test_acc" in metrics  # trainer.test() after the fit logs to the same run
    epoch_steps = [p.step for p in metrics["epoch"]]
    assert len(epoch_steps) == len(set(epoch_steps))  # one epoch value per step
    (data,) = [r for r in lineage if r.is_input]
    assert (data.name, data.kind, data.digest) == ("digits", "data", DATA_DIGEST)
    assert data.summary["rows"] == 1797
    assert not [r for r in lineage if r.kind == "checkpoint"]  # log_model=False


def test_hyperparameters_flatten_namespaces_dataclasses_and_nesting() -> None:
    @dataclass
    class Optim:
        name: str
        lr: float

    params = Namespace(
        optim=Optim("sgd", 0.1),
        layers={"sizes": [64, 32], "act": torch.nn.ReLU},
        seed=torch.tensor(7),
        empty={},
    )
    assert flatten_hyperparams(params) == {
        "optim/name": "sgd",
        "optim/lr": 0.1,
        "layers/sizes": [64, 32],
        "layers/act": "torch.nn.modules.activation.ReLU",
        "seed": 7,
        "empty": {},
    }
    with pytest.raises(ConfigurationError, match="hyperparameters must be a dict"):
        flatten_hyperparams([("lr", 0.1)])


def test_log_model_all_logs_every_checkpoint_with_its_summary(tmp_path: Path, uri: str) -> None:
    logger = EnsignLogger(project=PROJECT, tracking_uri=uri, log_model="all")
    folder = tmp_path / "ckpt"
    fit = trainer(tmp_path, max_epochs=3, logger=logger, callbacks=[checkpointing(folder)])
    fit.fit(MLP(), datamodule=DigitsData())
    best = fit.checkpoint_callback.best_model_path

    with run_of(uri, logger.run_id) as client:
        refs = {r.name: r for r in client.get_artifacts_lineage() if r.kind == "checkpoint"}
    # every checkpoint ModelCheckpoint wrote, including those it later deleted
    assert set(refs) == {"epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt", "epoch=2-step=12.ckpt"} | {
        "last.ckpt"
    }
    first = refs["epoch=0-step=4.ckpt"]
    assert first.summary["epoch"] == 0
    assert first.summary["global_step"] == 4
    assert (first.summary["monitor"], first.summary["mode"]) == ("val_acc", "max")
    assert 0.0 <= first.summary["score"] <= 1.0
    assert first.uri == str(folder / "epoch=0-step=4.ckpt")
    last = refs["last.ckpt"]
    assert last.summary["best_model_path"] == best
    assert last.digest == sha256_file(folder / "last.ckpt")  # the final bytes, not an earlier save
    assert refs[Path(best).name].digest == sha256_file(best)
    assert not (folder / STAGING_FOLDER).exists()


def test_log_model_true_keeps_only_best_and_last(tmp_path: Path, uri: str) -> None:
    logger = EnsignLogger(project=PROJECT, tracking_uri=uri, log_model=True)
    folder = tmp_path / "ckpt"
    fit = trainer(tmp_path, max_epochs=3, logger=logger, callbacks=[checkpointing(folder)])
    fit.fit(MLP(), datamodule=DigitsData())
    best = Path(fit.checkpoint_callback.best_model_path)

    with run_of(uri, logger.run_id) as client:
        refs = {r.name: r for r in client.get_artifacts_lineage() if r.kind == "checkpoint"}
    assert set(refs) == {best.name, "last.ckpt"}
    assert refs[best.name].summary["aliases"] == ["best"]
    assert refs["last.ckpt"].summary["aliases"] == ["last"]
    assert refs[best.name].digest == sha256_file(best)
    assert refs["last.ckpt"].digest == sha256_file(folder / "last.ckpt")


def test_checkpoints_in_an_object_store_are_logged_by_reference(uri: str, tmp_path: Path) -> None:
    logger = EnsignLogger(
        project=PROJECT, tracking_uri=uri, log_model="all", promote="val_acc >= 0"
    )
    fit = trainer(tmp_path, logger=logger, callbacks=[checkpointing("memory://ensign-test/ckpt")])
    fit.fit(MLP(), datamodule=DigitsData())

    with run_of(uri, logger.run_id) as client:
        refs = {r.name: r for r in client.get_artifacts_lineage() if not r.is_input}
    assert refs["last.ckpt"].uri == "memory://ensign-test/ckpt/last.ckpt"
    assert all(r.digest is None and not r.manifest for r in refs.values())  # not copied
    version = logger.promoted_version
    assert version is not None
    assert version.content["checkpoint"]["path"] == fit.checkpoint_callback.best_model_path
    assert version.manifest == {}


# promotion ---------------------------------------------------------------------------------


def test_successful_fit_promotes_the_best_checkpoint_with_its_lineage(
    tmp_path: Path, uri: str
) -> None:
    promote = Promotion(when="val_acc >= 0.5", description="digits MLP", tags=["auto"])
    logger = EnsignLogger(project=PROJECT, tracking_uri=uri, promote=promote)
    fit = trainer(tmp_path, max_epochs=3, logger=logger, callbacks=[checkpointing(tmp_path / "c")])
    fit.fit(MLP(), datamodule=DigitsData())
    best = Path(fit.checkpoint_callback.best_model_path)

    version = logger.promoted_version
    assert version is not None
    assert (version.name, version.kind, version.run) == ("v1", "model", logger.run_id)
    assert (version.description, version.tags) == ("digits MLP", ["auto"])
    assert version.artifacts == [MODEL_REF]
    assert version.content["checkpoint"]["checkpoint"] == best.name
    assert version.content["hyperparameters"]["lr"] == 0.02
    with ProjectClient(PROJECT, tracking_uri=uri) as projects:
        pulled = tmp_path / "pulled"
        projects.pull_model_version("v1", pulled)
        lineage = projects.get_model_version_lineage("v1")
    assert sha256_file(pulled / MODEL_REF / best.name) == sha256_file(best)
    assert {(r.name, r.is_input) for r in lineage} == {("digits", True), (MODEL_REF, False)}
    with run_of(uri, logger.run_id) as client:
        (decision,) = client.get_promotions()
        assert client.get_run().is_promoted
    assert decision.promoted
    assert decision.version == "v1"
    assert decision.reasons[0].startswith("val_acc = ")


def test_condition_that_fails_promotes_nothing_and_says_why(tmp_path: Path, uri: str) -> None:
    logger = EnsignLogger(project=PROJECT, tracking_uri=uri, promote="val_acc > 1.5")
    fit = trainer(tmp_path, logger=logger, callbacks=[checkpointing(tmp_path / "c")])
    fit.fit(MLP(), datamodule=DigitsData())

    assert logger.promoted_version is None
    with run_of(uri, logger.run_id) as client:
        (decision,) = client.get_promotions()
        assert client.get_run().status == "succeeded"
    assert not decision.promoted
    assert "> 1.5: false" in decision.reasons[0]
    with ProjectClient(PROJECT, tracking_uri=uri) as projects:
        assert projects.list_model_versions() == []


def test_better_than_production_compares_with_the_holders_run(tmp_path: Path, uri: str) -> None:
    promote = Promotion(better_than="production", metric="val_acc")
    good = EnsignLogger(project=PROJECT, tracking_uri=uri, promote=promote)
    trainer(tmp_path, logger=good, callbacks=[checkpointing(tmp_path / "a")]).fit(
        MLP(), datamodule=DigitsData()
    )
    assert good.promoted_version is not None
    with ProjectClient(PROJECT, tracking_uri=uri) as projects:
        projects.stage_model_version("v1", Stages.PRODUCTION)

    frozen = EnsignLogger(project=PROJECT, tracking_uri=uri, promote=promote)
    trainer(tmp_path, logger=frozen, callbacks=[checkpointing(tmp_path / "b")]).fit(
        MLP(lr=0.0),
        datamodule=DigitsData(),  # learns nothing: cannot beat v1
    )
    assert frozen.promoted_version is None
    with run_of(uri, frozen.run_id) as client:
        (decision,) = client.get_promotions()
    assert not decision.promoted
    assert "of production holder v1: false" in decision.reasons[0]


def test_fit_that_raises_fails_the_run_promotes_nothing_and_keeps_the_exception(
    tmp_path: Path, uri: str
) -> None:
    logger = EnsignLogger(project=PROJECT, tracking_uri=uri, log_model=True, promote="val_acc >= 0")
    boom = RuntimeError("loss went to the moon")
    fit = trainer(
        tmp_path,
        max_epochs=3,
        logger=logger,
        callbacks=[checkpointing(tmp_path / "c"), Explode(step=6, error=boom)],
    )
    with pytest.raises(RuntimeError) as raised:
        fit.fit(MLP(), datamodule=DigitsData())
    assert raised.value is boom

    with run_of(uri, logger.run_id) as client:
        run = client.get_run()
        (decision,) = client.get_promotions()
        steps = [p.step for p in client.get_metrics()["train_loss"]]
    assert (run.status, run.is_promoted) == ("failed", False)
    assert steps == list(range(6))
    assert not decision.promoted
    assert "the fit failed: RuntimeError('loss went to the moon')" in decision.reasons[0]
    with ProjectClient(PROJECT, tracking_uri=uri) as projects:
        assert projects.list_model_versions() == []


def test_interrupted_fit_is_stopped_and_promotes_nothing(tmp_path: Path, uri: str) -> None:
    logger = EnsignLogger(project=PROJECT, tracking_uri=uri, promote="val_acc >= 0")
    fit = trainer(
        tmp_path,
        logger=logger,
        callbacks=[checkpointing(tmp_path / "c"), Explode(step=5, error=KeyboardInterrupt())],
    )
    previous = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning's graceful shutdown exits with 1
            fit.fit(MLP(), datamodule=DigitsData())
    finally:
        signal.signal(signal.SIGINT, previous)  # Lightning ignores Ctrl-C from then on

    with run_of(uri, logger.run_id) as client:
        assert client.get_run().status == "stopped"
        (decision,) = client.get_promotions()
    assert not decision.promoted
    assert "the fit interrupted" in decision.reasons[0]


# bad input ---------------------------------------------------------------------------------


def test_promote_naming_an_unlogged_metric_stops_the_fit_after_one_epoch(
    tmp_path: Path, uri: str
) -> None:
    logger = EnsignLogger(project=PROJECT, tracking_uri=uri, promote="val_accuracy >= 0.9")
    fit = trainer(tmp_path, max_epochs=50, logger=logger, callbacks=[checkpointing(tmp_path / "c")])
    with pytest.raises(MissingPromotionMetric, match="'val_accuracy'") as raised:
        fit.fit(MLP(), datamodule=DigitsData())

    assert fit.current_epoch == 1  # one epoch, not fifty
    message = str(raised.value)
    assert "has not logged after its first epoch" in message
    assert "epoch, train_loss, val_acc, val_loss" in message
    assert isinstance(raised.value, NotFound)
    with run_of(uri, logger.run_id) as client:
        assert client.get_run().status == "failed"
        (decision,) = client.get_promotions()
    assert not decision.promoted


def test_bad_arguments_fail_at_construction() -> None:
    with pytest.raises(ConfigurationError, match=r"log_model must be False, True or 'all'"):
        EnsignLogger(project=PROJECT, log_model="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="log_model must be"):
        EnsignCallback(project=PROJECT, log_model=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidCondition, match="column"):
        EnsignLogger(project=PROJECT, promote="val_acc >=")
    with pytest.raises(ConfigurationError, match="better_than needs metric"):
        EnsignLogger(project=PROJECT, promote=Promotion(better_than="production"))
    with pytest.raises(ConfigurationError, match="run_id must be 32 lowercase hex"):
        EnsignLogger(project=PROJECT, run_id="42")


def test_promote_without_checkpoints_is_refused_before_training(tmp_path: Path, uri: str) -> None:
    logger = EnsignLogger(project=PROJECT, tracking_uri=uri, promote="val_acc >= 0.5")
    fit = trainer(tmp_path, logger=logger, enable_checkpointing=False)
    with pytest.raises(ConfigurationError, match="add a ModelCheckpoint"):
        fit.fit(MLP(), datamodule=DigitsData())
    assert fit.global_step == 0
    assert logger.run_id is None  # nothing recorded


# another logger, resume --------------------------------------------------------------------


def test_callback_tracks_and_promotes_next_to_another_logger(tmp_path: Path, uri: str) -> None:
    callback = EnsignCallback(project=PROJECT, tracking_uri=uri, promote="val_acc >= 0")
    csv = CSVLogger(tmp_path / "csv")
    fit = trainer(tmp_path, logger=csv, callbacks=[checkpointing(tmp_path / "c"), callback])
    fit.fit(MLP(), datamodule=DigitsData())

    assert fit.logger is csv
    assert (Path(csv.log_dir) / "metrics.csv").read_text().count("\n") > 1
    assert callback.logger.promoted_version is not None
    with run_of(uri, callback.logger.run_id) as client:
        metrics = client.get_metrics()
        assert client.get_run().params["hidden"] == 32
    assert [p.step for p in metrics["train_loss"]] == list(range(8))


# Resuming into the folder that holds the checkpoint is the point; Lightning warns about it.
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
@pytest.mark.parametrize("kind", ["logger", "callback"])
def test_resume_from_a_checkpoint_continues_the_run_without_repeating_steps(
    tmp_path: Path, uri: str, kind: str
) -> None:
    def tracker() -> tuple[EnsignLogger, list[EnsignCallback]]:
        if kind == "logger":
            return EnsignLogger(project=PROJECT, tracking_uri=uri, promote="val_acc >= 0"), []
        callback = EnsignCallback(project=PROJECT, tracking_uri=uri, promote="val_acc >= 0")
        return callback.logger, [callback]

    folder = tmp_path / "ckpt"
    first, extra = tracker()
    crash = Explode(step=10, error=RuntimeError("node lost"))
    callbacks = [checkpointing(folder), crash, *extra]
    fit = trainer(tmp_path, max_epochs=4, logger=first, callbacks=callbacks)
    with pytest.raises(RuntimeError, match="node lost"):
        fit.fit(MLP(), datamodule=DigitsData())  # dies in epoch 2, after steps 8 and 9

    second, extra = tracker()
    callbacks = [checkpointing(folder), *extra]
    resumed = trainer(tmp_path, max_epochs=4, logger=second, callbacks=callbacks)
    resumed.fit(MLP(), datamodule=DigitsData(), ckpt_path=str(folder / "last.ckpt"))

    assert second.run_id == first.run_id
    with ProjectClient(PROJECT, tracking_uri=uri) as projects:
        assert len(projects.list_runs()) == 1
    with run_of(uri, first.run_id) as client:
        run = client.get_run()
        metrics = client.get_metrics()
        decisions = client.get_promotions()
    assert run.status == "succeeded"
    for name, points in metrics.items():
        steps = [p.step for p in points]
        assert steps == sorted(set(steps)), f"{name} repeats a step: {steps}"
    assert [p.step for p in metrics["train_loss"]] == list(range(16))
    assert [p.step for p in metrics["val_acc"]] == [3, 7, 11, 15]
    assert [d.promoted for d in decisions] == [False, True]  # the crash, then the finished fit


# The resumed fit writes to a folder named after its own logger.version, which Lightning
# asks for before it reads the checkpoint; it warns that the folder changed.
@pytest.mark.filterwarnings("ignore:The dirpath has changed from")
def test_resume_with_the_default_checkpoint_folder_continues_the_run(
    tmp_path: Path, uri: str
) -> None:
    # Without dirpath, ModelCheckpoint names its folder after logger.version before the
    # checkpoint is read: the run made for that is set aside for the checkpoint's run.
    first = EnsignLogger(project=PROJECT, tracking_uri=uri)
    crash = Explode(step=6, error=RuntimeError("preempted"))
    fit = trainer(tmp_path, max_epochs=3, logger=first, callbacks=[checkpointing(None), crash])
    with pytest.raises(RuntimeError, match="preempted"):
        fit.fit(MLP(), datamodule=DigitsData())
    last = fit.checkpoint_callback.last_model_path
    assert first.run_id is not None
    assert first.run_id in last  # the folder is named after the run

    second = EnsignLogger(project=PROJECT, tracking_uri=uri)
    resumed = trainer(tmp_path, max_epochs=3, logger=second, callbacks=[checkpointing(None)])
    resumed.fit(MLP(), datamodule=DigitsData(), ckpt_path=last)

    assert second.run_id == first.run_id
    with ProjectClient(PROJECT, tracking_uri=uri) as projects:
        runs = {r.uuid: r for r in projects.list_runs()}
    assert runs[first.run_id].status == "succeeded"
    (aside,) = [r for r in runs.values() if r.uuid != first.run_id]
    assert (aside.status, aside.outputs) == ("stopped", {"superseded_by": first.run_id})
    with run_of(uri, first.run_id) as client:
        assert [p.step for p in client.get_metrics()["train_loss"]] == list(range(12))


# Fine-tuning writes its checkpoints to a folder of its own; Lightning warns about that.
@pytest.mark.filterwarnings("ignore:The dirpath has changed from")
def test_checkpoint_of_another_project_starts_a_new_run_that_records_it(
    tmp_path: Path, uri: str
) -> None:
    pretrain = EnsignLogger(project=PROJECT, tracking_uri=uri)
    fit = trainer(
        tmp_path, max_epochs=1, logger=pretrain, callbacks=[checkpointing(tmp_path / "a")]
    )
    fit.fit(MLP(), datamodule=DigitsData())
    source = str(tmp_path / "a" / "last.ckpt")

    tune = EnsignLogger(project="digits-finetune", tracking_uri=uri)
    fit = trainer(tmp_path, max_epochs=2, logger=tune, callbacks=[checkpointing(tmp_path / "b")])
    fit.fit(MLP(), datamodule=DigitsData(), ckpt_path=source)

    assert tune.run_id != pretrain.run_id
    with run_of(uri, tune.run_id) as client:
        inputs = {r.name: r for r in client.get_artifacts_lineage() if r.is_input}
    assert inputs["resumed-from"].kind == "checkpoint"
    assert inputs["resumed-from"].uri == source
    assert inputs["resumed-from"].summary == {"run": pretrain.run_id}
    assert inputs["resumed-from"].digest == sha256_file(source)


def test_run_attach_that_resume_relies_on_builds_a_complete_run(uri: str) -> None:
    backend = open_backend(uri)
    created = Run(backend, PROJECT, capture_env=False, owns_backend=False)
    created.log_metrics(step=4, loss=1.0)
    created.end("failed")
    attached = Run.attach(backend, created.uuid, owns_backend=False)
    # Run.attach mirrors Run.__init__ attribute by attribute: keep them in step.
    assert set(vars(attached)) == set(vars(created))
    attached.log_metric("loss", 0.5)  # a step-less value continues after step 4
    attached.end()
    with run_of(uri, created.uuid) as client:
        assert [p.step for p in client.get_metrics()["loss"]] == [4, 5]
        assert client.get_run().status == "succeeded"
    backend.close()


def test_run_id_continues_a_given_run(uri: str) -> None:
    first = EnsignLogger(project=PROJECT, tracking_uri=uri)
    first.log_hyperparams({"lr": 0.1})
    first.log_metrics({"loss": 1.0}, step=0)
    first.finalize("success")

    again = EnsignLogger(project=PROJECT, tracking_uri=uri, run_id=first.run_id)
    again.log_metrics({"loss": 0.5}, step=1)
    again.finalize("success")

    with run_of(uri, first.run_id) as client:
        assert [(p.step, p.value) for p in client.get_metrics()["loss"]] == [(0, 1.0), (1, 0.5)]
        assert client.get_run().status == "succeeded"
    missing = EnsignLogger(project=PROJECT, tracking_uri=uri, run_id="0" * 32)
    with pytest.raises(NotFound, match="no such run"):
        missing.log_metrics({"loss": 0.1}, step=0)


def test_logger_still_promotes_when_lightning_never_shows_it_the_trainer(
    tmp_path: Path, uri: str
) -> None:
    logger = EnsignLogger(project=PROJECT, tracking_uri=uri, promote="val_acc >= 0")
    fit = trainer(
        tmp_path,
        logger=logger,
        callbacks=[checkpointing(tmp_path / "c")],
        enable_autolog_hparams=False,  # so Lightning never calls log_graph
    )
    fit.fit(MLP(), datamodule=DigitsData())
    best = Path(fit.checkpoint_callback.best_model_path)
    version = logger.promoted_version
    assert version is not None
    assert version.manifest == {
        f"{MODEL_REF}/{best.name}": {"digest": sha256_file(best), "size": best.stat().st_size}
    }


def test_logger_works_with_the_pytorch_lightning_namespace(tmp_path: Path, uri: str) -> None:
    # The older package name ships twin classes; EnsignLogger recognises both.
    pl = pytest.importorskip("pytorch_lightning", reason="the pytorch_lightning twin is optional")

    class Linear(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(64, 10)

        def training_step(self, batch: list[torch.Tensor], index: int) -> torch.Tensor:
            loss = torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: list[torch.Tensor], index: int) -> None:
            self.log("val_acc", (self.net(batch[0]).argmax(1) == batch[1]).float().mean())

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=0.02)

    logger = EnsignLogger(project=PROJECT, tracking_uri=uri, promote="val_acc >= 0")
    fit = pl.Trainer(
        max_epochs=2,
        logger=logger,
        callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "c", monitor="val_acc")],
        limit_train_batches=4,
        limit_val_batches=1,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = DigitsData()  # a lightning.pytorch data module: use its loaders, not itself
    data.setup("fit")
    fit.fit(Linear(), data.train_dataloader(), data.val_dataloader())

    version = logger.promoted_version
    assert version is not None
    assert version.content["checkpoint"]["path"] == fit.checkpoint_callback.best_model_path
