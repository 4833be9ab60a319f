"""``EnsignCallback``: ensign tracking and promotion for a trainer that keeps another logger."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from typing_extensions import override

from ensign.promotion.spec import Promotion
from ensign_lightning._checkpoints import LogModel
from ensign_lightning._resume import CHECKPOINT_KEY
from ensign_lightning.logger import EnsignLogger

__all__ = ["EnsignCallback"]


class EnsignCallback(Callback):
    """Track a fit as an ensign run and promote it, next to whatever logger the trainer has.

    .. code-block:: python

        trainer = Trainer(
            logger=TensorBoardLogger("tb_logs"),
            callbacks=[ModelCheckpoint(monitor="val_acc", mode="max"),
                       EnsignCallback(project="digits", promote="val_acc >= 0.9")],
        )

    It takes the arguments of :class:`~ensign_lightning.EnsignLogger` and does the same
    things with the same code: at the start of each fit it adds its own ``EnsignLogger``
    (:attr:`logger`) to ``trainer.loggers``, so metrics, hyperparameters and checkpoints
    reach ensign exactly as they reach the other loggers.

    Resume: the run's id is part of the callback's state in every checkpoint, so
    ``Trainer.fit(ckpt_path=...)`` continues the same run.

    An ``EnsignLogger`` used as the trainer's logger adds an ``EnsignCallback`` of its own
    (its companion, which follows the fit for it and keeps no callback state: the run's
    id travels in the checkpoint's ``"ensign"`` entry instead).

    Args:
        project: ``owner/name`` or ``name``; else ``ENSIGN_PROJECT``, else ``default``.
        name: The run's name.
        description: The run's description.
        tags: The run's tags.
        tracking_uri: Where metadata lives.
        artifacts_uri: Where bytes go.
        log_model: ``False``, ``True`` or ``"all"``.
        promote: A condition string or an :class:`ensign.Promotion`.
        run_id: Continue this run rather than start one.
        prefix: Put before every metric name.

    Attributes:
        logger: The ``EnsignLogger`` that does the work.
    """

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
        self.logger = EnsignLogger(
            project,
            name=name,
            description=description,
            tags=tags,
            tracking_uri=tracking_uri,
            artifacts_uri=artifacts_uri,
            log_model=log_model,
            promote=promote,
            run_id=run_id,
            prefix=prefix,
        )
        self.logger._callback = self
        self._companion = False
        self._key = self._generate_state_key(project=self.logger.name)

    @classmethod
    def _companion_of(cls, logger: EnsignLogger) -> EnsignCallback:
        """The callback an ``EnsignLogger`` adds to its trainer to follow the fit."""
        callback = cls.__new__(cls)
        callback.logger = logger
        callback._companion = True
        callback._key = callback._generate_state_key(project=logger.name, companion=True)
        return callback

    @property
    @override
    def state_key(self) -> str:
        return self._key  # Lightning asks for it at every hook: computed once

    # joining the trainer -------------------------------------------------------------------

    def _join(self, trainer: Trainer) -> None:
        if not any(existing is self.logger for existing in trainer.loggers):
            trainer.loggers = [*trainer.loggers, self.logger]
        self.logger._bind(trainer)

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._join(trainer)

    @override
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING:  # trainer.validate(); fits join earlier
            self._join(trainer)

    @override
    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._join(trainer)

    # following the fit ---------------------------------------------------------------------

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Strategies that restore checkpoints after setup have restored it by now.
        if trainer.is_global_zero and self.logger._bound:
            self.logger._open()
            self.logger._flush_pending()

    @override
    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Sanity-check metrics are not logged, but their names will be at each validation.
        self.logger._sanity_keys = frozenset(trainer.callback_metrics)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.logger._validated = True

    @override
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.logger._check_promotion_metrics(trainer)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.logger._epochs_done += 1

    @override
    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        self.logger._exception = exception

    # resume --------------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        run_id = self.logger.run_id
        return {"run_uuid": run_id, "project": self.logger.name} if run_id else {}

    @override
    def state_dict(self) -> dict[str, Any]:
        return {} if self._companion else self._identity()

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("run_uuid"):
            self.logger._resume_hint = dict(state_dict)

    @override
    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        identity = self._identity()
        if identity and trainer.is_global_zero:
            checkpoint[CHECKPOINT_KEY] = identity

    @override
    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        hint = checkpoint.get(CHECKPOINT_KEY)
        if isinstance(hint, dict) and hint.get("run_uuid") and self.logger._resume_hint is None:
            self.logger._resume_hint = dict(hint)
