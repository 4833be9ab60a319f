"""Checkpoints as lineage: describe a saved checkpoint, and upload it without blocking training.

The training loop only pays for a hard link: :meth:`CheckpointUploads.saved` pins the
bytes of the file just written (``ModelCheckpoint`` may delete it, or replace
``last.ckpt``, before the upload runs) and hands the upload to a one-thread pool. The
upload stores the bytes in the run's blob store and records a ``checkpoint`` ref that
points at the original path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.callbacks import ModelCheckpoint

from ensign.records import ArtifactRef
from ensign.registry import RunBatch
from ensign.tracking.refs import is_remote_path
from ensign.tracking.run import Run
from ensign.tracking.uploads import UploadPool

__all__ = [
    "STAGING_FOLDER",
    "CheckpointUploads",
    "LogModel",
    "describe_checkpoint",
    "just_saved",
]

LogModel = bool | Literal["all"]

#: Hidden folder, next to the checkpoints, that holds hard links while they upload.
STAGING_FOLDER = ".ensign-staging"

#: With ``log_model="all"``, uploaded checkpoints are recorded at most this often (seconds):
#: one transaction for several refs, and each new one visible within that delay.
WRITE_EVERY_S = 5.0


def _number(value: Any) -> float | None:
    if value is None:
        return None
    item = getattr(value, "item", None)
    return float(item() if callable(item) else value)


def describe_checkpoint(
    callback: ModelCheckpoint, epoch: int | None, global_step: int | None
) -> dict[str, Any]:
    """Return the summary of the checkpoint a ``ModelCheckpoint`` has just saved.

    ``score`` is the monitored value it was saved with (``None`` without ``monitor``).
    """
    return {
        "score": _number(getattr(callback, "current_score", None)),
        "monitor": callback.monitor,
        "mode": callback.mode,
        "epoch": epoch,
        "global_step": global_step,
        "best_model_path": callback.best_model_path or None,
    }


def just_saved(callback: ModelCheckpoint) -> str | None:
    """The file a ``ModelCheckpoint`` has just written."""
    saved = getattr(callback, "_last_checkpoint_saved", None)
    if isinstance(saved, str) and saved:
        return saved
    # Older Lightning: the newest of the files it knows.
    candidates = {callback.last_model_path, callback.best_model_path, *callback.best_k_models}
    local = [p for p in candidates if p and os.path.isfile(p)]
    return max(local, key=os.path.getmtime) if local else None


def _snapshot(path: str) -> Path:
    """Pin the bytes of ``path`` under a new name: a hard link, or a copy where links fail."""
    source = Path(path)
    staging = source.parent / STAGING_FOLDER
    staging.mkdir(exist_ok=True)
    pinned = staging / f"{secrets.token_hex(6)}-{source.name}"
    try:
        os.link(source, pinned)
    except OSError:
        shutil.copy2(source, pinned)
    return pinned


def _discard(pinned: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        pinned.unlink()


class CheckpointUploads:
    """Logs the checkpoints of one run as ``checkpoint`` refs, uploading in the background.

    Args:
        run: The run the refs belong to.
        log_model: ``"all"``: each checkpoint becomes a ref once its bytes are stored
            (refs are recorded together, every :data:`WRITE_EVERY_S` seconds at most).
            ``True``: checkpoints upload as they are saved (skipping one that is neither
            best nor last by the time its turn comes), and :meth:`finish` keeps refs for
            the best and the last only.
    """

    def __init__(self, run: Run, log_model: LogModel) -> None:
        self._run = run
        self._all = log_model == "all"
        self._pool = UploadPool(max_workers=1)  # one thread: refs land in save order
        self._lock = threading.Lock()
        self._wanted: frozenset[str] = frozenset()
        self._stored: dict[str, ArtifactRef] = {}
        self._remote: dict[str, dict[str, Any]] = {}
        self._staging: set[Path] = set()
        self._unwritten: list[ArtifactRef] = []  # touched by the upload thread only
        self._written_at = time.monotonic()

    def saved(self, path: str, summary: dict[str, Any], wanted: frozenset[str]) -> None:
        """Take a checkpoint that has just been written; returns at once.

        Args:
            path: The checkpoint file (local, or an object-store URL logged by reference).
            summary: The ref's summary (see :func:`describe_checkpoint`).
            wanted: The paths that are best or last now (used with ``log_model=True``).
        """
        with self._lock:
            self._wanted = wanted
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if is_remote_path(path):
            if self._all:
                self._run.log_artifact_ref(path, kind="checkpoint", name=name, summary=summary)
            else:
                self._remote[path] = summary
            return
        pinned = _snapshot(path)
        self._staging.add(pinned.parent)
        self._pool.submit(lambda: self._upload(path, name, pinned, summary))

    def _upload(self, path: str, name: str, pinned: Path, summary: dict[str, Any]) -> None:
        try:
            with self._lock:
                if not self._all and path not in self._wanted:
                    return  # superseded before its turn: neither best nor last any more
            store = self._run.backend.store
            blob = store.put_file(pinned)
            ref = ArtifactRef(
                run=self._run.uuid,
                name=name,
                kind="checkpoint",
                uri=os.path.abspath(path),
                digest=blob.digest,
                size=blob.size,
                is_input=False,
                summary=summary,
                store_uri=store.uri,
                manifest={name: {"digest": blob.digest, "size": blob.size}},
            )
            if self._all:
                self._unwritten.append(ref)
                if time.monotonic() - self._written_at >= WRITE_EVERY_S:
                    self._write_refs()
            else:
                with self._lock:
                    self._stored[path] = ref
        finally:
            _discard(pinned)

    def _write_refs(self) -> None:
        """Record the refs whose bytes are stored (one transaction for all of them)."""
        refs, self._unwritten = self._unwritten, []
        self._written_at = time.monotonic()
        if refs:
            self._run.backend.registry.write_batch(RunBatch(self._run.uuid, refs=refs))

    def finish(self, best: str | None, last: str | None) -> list[BaseException]:
        """Wait for the uploads; with ``log_model=True`` record the best and last refs.

        Returns:
            What failed (nothing is swallowed: the caller raises it).
        """
        errors = self._pool.wait()
        self._pool.shutdown()
        for folder in self._staging:
            with contextlib.suppress(OSError):  # not empty: something else put files there
                folder.rmdir()
        if self._all:
            try:
                self._write_refs()
            except Exception as exc:
                errors.append(exc)
            return errors
        aliases: dict[str, list[str]] = {}
        for path, alias in ((best, "best"), (last, "last")):
            if path:
                aliases.setdefault(path, []).append(alias)
        refs = []
        for path, names in aliases.items():
            stored = self._stored.get(path)
            if stored is not None:
                summary = {**stored.summary, "aliases": names}
                refs.append(dataclasses.replace(stored, summary=summary))
            elif path in self._remote:
                name = path.rstrip("/").rsplit("/", 1)[-1]
                summary = {**self._remote[path], "aliases": names}
                self._run.log_artifact_ref(path, kind="checkpoint", name=name, summary=summary)
        if refs:
            try:
                self._run.backend.registry.write_batch(RunBatch(self._run.uuid, refs=refs))
            except Exception as exc:
                errors.append(exc)
        return errors
