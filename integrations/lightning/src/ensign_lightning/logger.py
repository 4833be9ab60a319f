"""``EnsignLogger``: a Lightning logger that tracks a fit as an ensign run and promotes it."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import weakref
from argparse import Namespace
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torch.nn import Module
from typing_extensions import override

from ensign.backend import Backend, open_backend
from ensign.config import resolve_project
from ensign.errors import BackgroundError, ConfigurationError, RunNotFound
from ensign.names import check_project_key
from ensign.promotion.spec import Promotion, as_promotion
from ensign.records import ArtifactVersion, RunStatus
from ensign.tracking.run import Run
from ensign_lightning._checkpoints import (
    CheckpointUploads,
    LogModel,
    describe_checkpoint,
    just_saved,
)
from ensign_lightning._inputs import collect_data_refs, flatten_hyperparams
from ensign_lightning._lightning import global_rank, is_a
from ensign_lightning._promotion import (
    MissingPromotionMetric,
    current_exception,
    promote_checkpoint,
    record_no_promotion,
    run_status,
)
from ensign_lightning._resume import continuable_run, hint_from

if TYPE_CHECKING:
    from ensign_lightning.callback import EnsignCallback

__all__ = ["EnsignLogger"]

_RUN_ID = re.compile(r"[0-9a-f]{32}")
# Keywords of Run.log_metrics that a metric name must not shadow.
_RESERVED = frozenset({"step", "timestamp"})
_SEVERITY = {RunStatus.SUCCEEDED: 0, RunStatus.STOPPED: 1, RunStatus.FAILED: 2}
# Loggers whose run is open (say, reopened through .run after a fit), ended at exit.
_OPEN: weakref.WeakSet[EnsignLogger] = weakref.WeakSet()


@atexit.register
def _end_open_runs() -> None:  # pragma: no cover - runs at interpreter exit
    for logger in list(_OPEN):
        with contextlib.suppress(Exception):
            logger._close(logger._worst or RunStatus.SUCCEEDED)


class EnsignLogger(Logger):
    """Track a Lightning fit as an ensign run; optionally promote its best checkpoint.

    .. code-block:: python

        from lightning.pytorch import Trainer
        from lightning.pytorch.callbacks import ModelCheckpoint
        from ensign_lightning import EnsignLogger

        logger = EnsignLogger(project="digits", log_model=True, promote="val_acc >= 0.9")
        trainer = Trainer(logger=logger, callbacks=[ModelCheckpoint(monitor="val_acc", mode="max")])
        trainer.fit(model, datamodule=data)

    What is recorded: hyperparameters (flattened: nested dicts, ``Namespace`` and
    dataclasses), every metric Lightning logs (global rank zero only), the data refs a
    ``LightningDataModule`` exposes through ``ensign_data_refs()`` (see
    :func:`ensign_lightning.collect_data_refs`), and checkpoints as ``checkpoint`` refs
    with ``{score, monitor, mode, epoch, global_step, best_model_path}`` in their summary.

    Checkpoints (``log_model``): ``False`` logs none; ``"all"`` logs each one as it is
    saved; ``True`` keeps refs for the best and the last only, recorded at the end of the
    fit. Either way the training loop only makes a hard link; the bytes upload on a
    background thread. Checkpoints saved to an object store (``ModelCheckpoint(dirpath=
    "s3://...")``) are logged by reference, not copied.

    Promotion (``promote``): when a fit ends successfully, the condition is evaluated on
    the run's final metrics (and ``better_than``), and if it holds, the best checkpoint
    (``ModelCheckpoint.best_model_path``, else the last) becomes a **model** version that
    carries it, linked to the run with its hyperparameters and input data refs. A failed
    or interrupted fit promotes nothing. The decision and its reasons are recorded on the
    run either way. A condition naming a metric the model does not log stops the fit with
    :class:`~ensign_lightning.MissingPromotionMetric` once the first epoch (and a
    validation, if the fit validates) has been logged: the earliest moment at which every
    name a module logs per step, per epoch and in validation has appeared, so a misspelt
    name costs one epoch, not a whole training.

    Resume: ``Trainer.fit(ckpt_path=...)`` continues the run that wrote the checkpoint (its
    id is stored in every checkpoint), and metric steps already recorded are not logged a
    second time. A checkpoint from another tracking store or project starts a new run that
    records it as an input. ``run_id=`` continues a given run instead.

    Distributed: only global rank zero creates the run, logs and promotes.

    Both namespaces: the logger works with ``lightning.pytorch`` and with the twin
    ``pytorch_lightning`` package (:class:`~ensign_lightning.EnsignCallback` is a
    ``lightning.pytorch`` callback).

    Lightning calls :meth:`log_graph` at the start of every fit, validate and test; that is
    where the logger meets its trainer and adds its companion
    :class:`~ensign_lightning.EnsignCallback`. With ``Trainer(enable_autolog_hparams=False)``
    it never does: the logger still logs and promotes (a fit shows itself by its
    checkpoints), but cannot check ``promote``'s metrics early, log data refs or resume on
    its own; use ``EnsignCallback`` there.

    Args:
        project: ``owner/name`` or ``name``; else ``ENSIGN_PROJECT``, else ``default``.
        name: The run's name.
        description: The run's description.
        tags: The run's tags.
        tracking_uri: Where metadata lives; else ``ENSIGN_TRACKING_URI``, else ``./.ensign``.
        artifacts_uri: Where bytes go; else the store's own.
        log_model: ``False``, ``True`` or ``"all"`` (see above).
        promote: A condition string (``"val_acc >= 0.9"``) or an :class:`ensign.Promotion`.
        run_id: Continue this run rather than start one.
        prefix: Put before every metric name (joined with ``-``).

    Raises:
        ConfigurationError: for a ``log_model`` other than ``False``, ``True``, ``"all"``,
            a malformed ``run_id``, or a bad ``promote``.
        InvalidCondition: when ``promote`` does not parse.
        InvalidName: for a bad project key.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        project: str | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        tracking_uri: str | os.PathLike[str] | None = None,
        artifacts_uri: str | os.PathLike[str] | None = None,
        log_model: LogModel = False,
        promote: str | Promotion | None = None,
        run_id: str | None = None,
        prefix: str = "",
    ) -> None:
        super().__init__()
        if not (isinstance(log_model, bool) or log_model == "all"):
            raise ConfigurationError(f"log_model must be False, True or 'all', not {log_model!r}")
        if run_id is not None and not (isinstance(run_id, str) and _RUN_ID.fullmatch(run_id)):
            raise ConfigurationError(f"run_id must be 32 lowercase hex characters, not {run_id!r}")
        self._project = check_project_key(resolve_project(project))
        self._run_name = name
        self._description = description
        self._tags = list(tags or [])
        self._tracking_uri = os.fspath(tracking_uri) if tracking_uri is not None else None
        self._artifacts_uri = os.fspath(artifacts_uri) if artifacts_uri is not None else None
        self._log_model: LogModel = log_model
        self._promotion = as_promotion(promote)
        self._prefix = prefix
        self._run_uuid: str | None = run_id
        self._callback: EnsignCallback | None = None
        # live state (never pickled: a spawned process opens its own)
        self._run: Run | None = None
        self._uploads: CheckpointUploads | None = None
        self._trainer_ref: weakref.ref[Trainer] | None = None
        # what the current fit has seen
        self._bound = False
        self._fitting = False
        self._resuming = False
        self._resume_hint: dict[str, Any] | None = None
        self._pending_params: dict[str, Any] = {}
        self._pending_data: list[dict[str, Any]] = []
        self._hyperparams: dict[str, Any] = {}
        self._floor: dict[str, int] = {}
        self._floor_top = -1
        self._epoch_step: int | None = None
        self._seen: set[str] | None = None
        self._sanity_keys: frozenset[str] = frozenset()
        self._validated = False
        self._epochs_done = 0
        self._checked = True
        self._exception: BaseException | None = None
        self._checkpoints: dict[str, dict[str, Any]] = {}
        self._unbound_checkpoints = False
        self._best: str | None = None
        self._last: str | None = None
        self._worst: RunStatus | None = None
        self._promoted: ArtifactVersion | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_run=None, _uploads=None, _trainer_ref=None)
        return state

    # what Lightning and users read ---------------------------------------------------------

    @property
    @override
    def name(self) -> str:
        """The project key."""
        return self._project

    @property
    @override
    def version(self) -> str | None:
        """The run's id (on global rank zero; creating the run if it has none yet)."""
        if global_rank() != 0:
            return None
        return self._run_uuid or self._open().uuid

    @property
    def run_id(self) -> str | None:
        """The run's id, or ``None`` before it exists (never creates it)."""
        return self._run_uuid

    @property
    def run(self) -> Run | None:
        """The live run on global rank zero (created, or reopened, if needed); else ``None``.

        ``finalize()`` ends it; Lightning calls that at the end of each fit, validate
        and test.
        """
        if global_rank() != 0:
            return None
        return self._open()

    @property
    def promotion(self) -> Promotion | None:
        """What ``promote=`` asked for."""
        return self._promotion

    @property
    def promoted_version(self) -> ArtifactVersion | None:
        """The model version the last fit registered, if it promoted one (rank zero)."""
        return self._promoted

    # Logger hooks --------------------------------------------------------------------------

    @override
    @rank_zero_only
    def log_hyperparams(
        self, params: dict[str, Any] | Namespace | Any, *args: Any, **kwargs: Any
    ) -> None:
        """Log hyperparameters: nested dicts, ``Namespace`` and dataclasses are flattened."""
        flat = flatten_hyperparams(params)
        self._hyperparams.update(flat)
        if self._run is not None:
            self._run.log_params(**flat)
        else:
            self._pending_params.update(flat)

    @override
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics at ``step``; returns in microseconds (the run writes in the background)."""
        run = self._run if self._run is not None else self._open()
        if "epoch" in metrics:
            # Lightning adds "epoch" to every call, twice at a validation's step: keep one.
            if step is not None and step == self._epoch_step:
                metrics = {k: v for k, v in metrics.items() if k != "epoch"}
            self._epoch_step = step
        if self._prefix:
            metrics = {f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}": v for k, v in metrics.items()}
        if self._floor and step is not None:
            metrics = self._above_floor(metrics, step)
        if self._seen is not None:
            self._seen.update(metrics)
        if not metrics:
            return
        if _RESERVED.isdisjoint(metrics):
            run.log_metrics(step=step, **metrics)
        else:
            for key, value in metrics.items():
                run.log_metric(key, value, step=step)

    def _above_floor(self, metrics: Mapping[str, float], step: int) -> Mapping[str, float]:
        """Drop values at steps the resumed run already has (the fit replays them)."""
        if step > self._floor_top:
            self._floor = {}
            return metrics
        floor = self._floor
        return {k: v for k, v in metrics.items() if step > floor.get(k, -1)}

    @override
    def log_graph(self, model: Module, input_array: Tensor | None = None) -> None:
        """Record no graph; this is where the logger meets its trainer (see the class doc)."""
        if is_a(model, "LightningModule"):
            trainer = getattr(model, "_trainer", None)
            if is_a(trainer, "Trainer"):
                self._bind(cast(Trainer, trainer))

    @override
    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        """Log the checkpoint just saved (per ``log_model``); returns without waiting."""
        path = just_saved(checkpoint_callback)
        if not path:
            return
        self._unbound_checkpoints = not self._bound
        if self._run is None:
            self._open()
        trainer = self._trainer
        summary = describe_checkpoint(
            checkpoint_callback,
            trainer.current_epoch if trainer is not None else None,
            trainer.global_step if trainer is not None else None,
        )
        self._best = checkpoint_callback.best_model_path or self._best or path
        self._last = checkpoint_callback.last_model_path or path
        self._checkpoints[path] = summary
        for known in list(self._checkpoints):
            if known not in (self._best, self._last):
                del self._checkpoints[known]
        if self._uploads is not None:
            self._uploads.saved(path, summary, frozenset((self._best, self._last)))

    @override
    @rank_zero_only
    def finalize(self, status: str) -> None:
        """End the run: ``success`` → succeeded (and promote after a fit), ``failed`` → failed.

        Raises:
            MissingPromotionMetric: after a successful fit, when ``promote`` names a metric
                the run never logged.
            BackgroundError: when a checkpoint upload or a write failed.
        """
        exception = (self._exception or current_exception()) if status == "failed" else None
        outcome = run_status(status, exception)
        # Checkpoints are only saved by fits: one seen unbound was a fit all the same.
        fitting = (self._bound and self._fitting) or self._unbound_checkpoints
        self._bound = self._unbound_checkpoints = False
        if self._run is None and not fitting:
            return
        self._close(outcome, fitting=fitting, exception=exception)

    # the run -------------------------------------------------------------------------------

    @property
    def _trainer(self) -> Trainer | None:
        return self._trainer_ref() if self._trainer_ref is not None else None

    def _open(self) -> Run:
        """Return the live run, creating it (or reopening the one to continue) if needed."""
        if self._run is not None:
            return self._run
        backend = open_backend(self._tracking_uri, self._artifacts_uri)
        try:
            run = self._start(backend)
        except BaseException:
            backend.close()
            raise
        self._run = run
        _OPEN.add(self)
        self._uploads = CheckpointUploads(run, self._log_model) if self._log_model else None
        self._flush_pending()
        return run

    def _start(self, backend: Backend) -> Run:
        hint, self._resume_hint = self._resume_hint, None
        continued = continuable_run(backend, hint, self._project)
        target = continued or self._run_uuid
        if target is None:
            run = Run(
                backend,
                self._project,
                name=self._run_name,
                description=self._description,
                tags=self._tags,
            )
        else:
            try:
                run = Run.attach(backend, target)
            except RunNotFound:
                raise RunNotFound(
                    f"run_id={target!r}: no such run in {backend.location.uri}"
                ) from None
        if run.uuid != self._run_uuid:
            self._worst = None
        self._run_uuid = run.uuid
        trainer = self._trainer
        if self._resuming and trainer is not None and continued is None:
            # A checkpoint this store's runs did not write: record it as an input.
            run.log_artifact_ref(
                os.fspath(trainer.ckpt_path or ""),
                kind="checkpoint",
                name="resumed-from",
                is_input=True,
                upload=False,
                summary={"run": hint.get("run_uuid")} if hint else {},
            )
        if self._resuming and target is not None:
            self._floor = backend.registry.last_steps(run.uuid)
            self._floor_top = max(self._floor.values(), default=-1)
            if self._seen is not None:
                self._seen.update(self._floor)
        return run

    def _flush_pending(self) -> None:
        run = self._run
        if run is None:
            return
        if self._pending_params:
            run.log_params(**self._pending_params)
            self._pending_params = {}
        for item in self._pending_data:
            run.log_data_ref(**item)
        self._pending_data = []

    def _close(
        self,
        outcome: RunStatus,
        *,
        fitting: bool = False,
        exception: BaseException | None = None,
    ) -> None:
        """Finish the uploads, promote (after a successful fit), end the run."""
        run = self._run or self._open()
        self._run = None
        _OPEN.discard(self)
        uploads, self._uploads = self._uploads, None
        problems = uploads.finish(self._best, self._last) if uploads is not None else []
        error: Exception | None = None
        if fitting and self._promotion is not None:
            try:
                self._settle_promotion(run, outcome, exception, problems)
            except Exception as exc:
                error = exc
        if (problems or error is not None) and outcome is RunStatus.SUCCEEDED:
            outcome = RunStatus.FAILED
        if self._worst is not None and _SEVERITY[self._worst] > _SEVERITY[outcome]:
            outcome = self._worst
        self._worst = outcome
        try:
            run.end(outcome)
        except BackgroundError as exc:
            problems.append(exc)
        if exception is not None:
            # The fit's own exception is the one to see; ours ride on it as notes.
            for problem in [*problems, *([error] if error else [])]:
                if hasattr(exception, "add_note"):
                    exception.add_note(f"ensign: {problem!r}")
            return
        if error is not None:
            raise error
        if problems:
            raise BackgroundError(problems) from problems[0]

    def _settle_promotion(
        self,
        run: Run,
        outcome: RunStatus,
        exception: BaseException | None,
        problems: list[BaseException],
    ) -> None:
        assert self._promotion is not None
        self._promoted = None
        if outcome is not RunStatus.SUCCEEDED:
            what = "interrupted" if outcome is RunStatus.STOPPED else "failed"
            cause = f": {exception!r}" if exception is not None else ""
            record_no_promotion(run, [f"the fit {what}{cause}: nothing promoted"])
        elif problems:
            record_no_promotion(
                run, [f"checkpoint uploads failed ({problems[0]!r}): nothing promoted"]
            )
        else:
            best = self._best_checkpoint()
            self._promoted = promote_checkpoint(
                run,
                self._promotion,
                best,
                self._checkpoints.get(best or "", {}),
                self._hyperparams,
            )

    def _best_checkpoint(self) -> str | None:
        trainer = self._trainer
        callback: Any = trainer.checkpoint_callback if trainer is not None else None
        if is_a(callback, "ModelCheckpoint"):
            found = callback.best_model_path or callback.last_model_path
            if found:
                return str(found)
        return self._best or self._last

    # the fit (called by the companion EnsignCallback) --------------------------------------

    def _bind(self, trainer: Trainer) -> None:
        """Meet the trainer at the start of a fit, validate or test (every rank)."""
        current = self._trainer
        if self._bound and current is trainer:
            return
        fitting = trainer.state.fn == TrainerFn.FITTING
        if (
            fitting
            and self._promotion is not None
            and not any(is_a(c, "ModelCheckpoint") for c in trainer.checkpoint_callbacks)
        ):  # refused before anything is recorded: there is no run to fail
            raise ConfigurationError(
                "promote= promotes the best checkpoint, but the trainer saves none: "
                "add a ModelCheckpoint callback (and keep enable_checkpointing=True)"
            )
        self._bound = True
        self._trainer_ref = weakref.ref(trainer)
        self._exception = None
        self._fitting = fitting
        self._resuming = fitting and trainer.ckpt_path is not None
        self._install_callback(trainer)
        if fitting:
            self._reset_fit()
        if not trainer.is_global_zero:
            return
        if self._fitting:
            self._take_resume_hint(trainer)
            datamodule = getattr(trainer, "datamodule", None)
            self._pending_data = collect_data_refs(datamodule, trainer.lightning_module)
        if self._resuming and trainer.strategy.restore_checkpoint_after_setup:
            return  # the checkpoint is read later: open the run at on_train_start
        self._open()
        self._flush_pending()

    def _reset_fit(self) -> None:
        self._seen = set() if self._promotion is not None else None
        self._checked = self._promotion is None
        self._sanity_keys = frozenset()
        self._validated = False
        self._epochs_done = 0
        self._epoch_step = None
        self._floor, self._floor_top = {}, -1
        self._checkpoints = {}
        self._best = self._last = None
        if not self._resuming:
            self._resume_hint = None

    def _take_resume_hint(self, trainer: Trainer) -> None:
        if not self._resuming:
            return
        hint = self._resume_hint or hint_from(trainer)
        self._resume_hint = hint
        run = self._run
        if hint is None or run is None or hint.get("run_uuid") == run.uuid:
            return
        if continuable_run(run.backend, hint, self._project) is not None:
            # A run opened before the checkpoint was read (a ModelCheckpoint without
            # dirpath names its folder after the run): the checkpoint's run wins.
            run.log_outputs(superseded_by=hint["run_uuid"])
            self._run_uuid = None
            self._close(RunStatus.STOPPED)

    def _install_callback(self, trainer: Trainer) -> None:
        from ensign_lightning.callback import EnsignCallback

        if self._callback is None:
            self._callback = EnsignCallback._companion_of(self)
        callbacks: list[Any] = getattr(trainer, "callbacks")  # noqa: B009 - set in __init__
        if not any(c is self._callback for c in callbacks):
            callbacks.append(self._callback)

    def _check_promotion_metrics(self, trainer: Trainer) -> None:
        """Stop the fit early when ``promote`` names a metric the model does not log."""
        if self._checked or self._epochs_done == 0:
            return
        if trainer.enable_validation and not (self._validated or self._sanity_keys):
            return  # no validation yet: its metrics are not known
        self._checked = True
        payload: tuple[list[str], list[str]] | None = None
        if trainer.is_global_zero and self._promotion is not None:
            known = set(self._seen or ())
            if not self._validated:
                head = f"{self._prefix}{self.LOGGER_JOIN_CHAR}" if self._prefix else ""
                known |= {head + key for key in self._sanity_keys}
            missing = sorted(self._promotion.metrics - known)
            if missing:
                payload = (missing, sorted(known))
        self._seen = None
        payload = trainer.strategy.broadcast(payload, src=0)
        if payload is not None:
            raise MissingPromotionMetric(payload[0], payload[1], "after its first epoch")
