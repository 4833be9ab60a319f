"""ensign for PyTorch Lightning: track fits as runs, log checkpoints as lineage, promote the best.

::

    from ensign_lightning import EnsignLogger

    trainer = Trainer(
        logger=EnsignLogger(project="digits", log_model=True, promote="val_acc >= 0.9"),
        callbacks=[ModelCheckpoint(monitor="val_acc", mode="max")],
    )

:class:`EnsignLogger` is the trainer's logger; :class:`EnsignCallback` does the same next to
another logger. A ``LightningDataModule`` (or ``LightningModule``) that defines
``ensign_data_refs()`` gets its data refs logged as the run's inputs (see
:func:`collect_data_refs`).
"""

from ensign_lightning._checkpoints import STAGING_FOLDER, LogModel
from ensign_lightning._inputs import DATA_REFS_HOOK, collect_data_refs, flatten_hyperparams
from ensign_lightning._promotion import MODEL_REF, MissingPromotionMetric
from ensign_lightning._resume import CHECKPOINT_KEY
from ensign_lightning.callback import EnsignCallback
from ensign_lightning.logger import EnsignLogger

__version__ = "0.1.0"

__all__ = [
    "CHECKPOINT_KEY",
    "DATA_REFS_HOOK",
    "MODEL_REF",
    "STAGING_FOLDER",
    "EnsignCallback",
    "EnsignLogger",
    "LogModel",
    "MissingPromotionMetric",
    "__version__",
    "collect_data_refs",
    "flatten_hyperparams",
]
