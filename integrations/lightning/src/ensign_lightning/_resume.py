"""Resume: which run a checkpoint was written by, and whether this store can continue it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch import Trainer

from ensign.backend import Backend
from ensign.errors import RunNotFound

__all__ = ["CHECKPOINT_KEY", "continuable_run", "hint_from"]

#: The top-level checkpoint entry that names the run which wrote it (for resume).
CHECKPOINT_KEY = "ensign"


def hint_from(trainer: Trainer) -> dict[str, Any] | None:
    """The ensign entry of the checkpoint Lightning restored, if it is still in memory."""
    connector = getattr(trainer, "_checkpoint_connector", None)
    loaded = getattr(connector, "_loaded_checkpoint", None)
    hint = loaded.get(CHECKPOINT_KEY) if isinstance(loaded, Mapping) else None
    return dict(hint) if isinstance(hint, Mapping) else None


def continuable_run(backend: Backend, hint: Mapping[str, Any] | None, project: str) -> str | None:
    """The run a checkpoint names, when this store has it in ``project``; else ``None``."""
    if not hint or not isinstance(hint.get("run_uuid"), str):
        return None
    try:
        record = backend.registry.get_run(hint["run_uuid"])
    except RunNotFound:
        return None
    return record.uuid if record.project == project else None
