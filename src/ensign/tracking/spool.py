"""The offline spool: where a run logs while its server cannot be reached, until synced.

A spool is an embedded ensign store (a SQLite file and a blob folder, the same format as
``./.ensign``) kept per server under ``$XDG_CACHE_HOME/ensign/spool/<host>-<port>/``.

- A run that cannot reach its server at start lives there whole.
- A run that loses its server midway sends there only what could not be delivered: each
  undelivered batch is kept as it was sent, with its idempotency key, in
  ``batches/<run>/``, because the server may have written it and only the answer been
  lost; refs whose bytes could not be uploaded go to the embedded store with their bytes.

:meth:`Spool.sync` (``ensign sync``, and the start of the next run) sends each spooled run
and then forgets it, so nothing is lost and nothing is sent twice: a kept batch is sent
again under its own key, and everything else under keys derived from what is sent, so a
sync that is interrupted and run again replays the server's first answers. A run still
being logged by a live process (it holds ``locks/<run>.lock``) is left for later.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

import sqlalchemy as sa

from ensign import jsonio
from ensign.backend import Backend, open_backend
from ensign.errors import Conflict, EnsignError, ServerUnavailable
from ensign.records import ArtifactRef, RunStatus
from ensign.records import Run as RunRecord
from ensign.registry import RunBatch
from ensign.registry.rest import RestRegistry
from ensign.registry.sql import SqlRegistry
from ensign.registry.sql import runs as run_ops
from ensign.registry.sql.engine import write_transaction
from ensign.registry.sql.schema import decisions, metrics, params, refs, runs, settings
from ensign.registry.wire import batch_from_wire, batch_to_wire
from ensign.storage.blobstore import BlobStore

__all__ = ["Spool", "SyncReport", "announce", "spool_folder"]

_MARK = "spooled:"


def spool_folder(server_uri: str) -> Path:
    """Return the spool folder of a server (``$XDG_CACHE_HOME/ensign/spool/<host>-<port>``)."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", server_uri.split("://", 1)[-1]).strip("-.")
    return Path(cache_home) / "ensign" / "spool" / (name or "server")


def announce(message: str) -> None:
    """Tell the user about the spool, on stderr (once per event; no traceback)."""
    print(f"ensign: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class SyncReport:
    """What :meth:`Spool.sync` did.

    Attributes:
        runs: The ids of the runs now on the server (and forgotten by the spool).
        metrics: Metric points sent.
        blobs: Blobs uploaded.
        busy: Runs left alone because a live process is still logging them.
        failed: ``(run, why)`` of the runs the server refused; they stay spooled.
    """

    runs: list[str]
    metrics: int
    blobs: int
    busy: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


class Spool:
    """The spool of one server.

    Args:
        server_uri: The server's tracking URI (``http(s)://host:port``).
        folder: Where the spool lives (default: :func:`spool_folder`).
    """

    def __init__(self, server_uri: str, folder: Path | None = None) -> None:
        self.server_uri = server_uri
        self.folder = folder or spool_folder(server_uri)
        self._backend: Backend | None = None
        self._locks: dict[str, IO[bytes]] = {}

    def __repr__(self) -> str:
        return f"Spool({str(self.folder)!r})"

    @property
    def backend(self) -> Backend:
        """The embedded store of the spool (opened on first use)."""
        if self._backend is None:
            self._backend = open_backend(str(self.folder))
        return self._backend

    @property
    def _registry(self) -> SqlRegistry:
        registry = self.backend.registry
        assert isinstance(registry, SqlRegistry)
        return registry

    def close(self) -> None:
        """Release the spool's store and the runs this process was logging."""
        for handle in self._locks.values():
            handle.close()  # closing the file releases its lock
        self._locks.clear()
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def exists(self) -> bool:
        """Whether anything was ever spooled for this server."""
        return (self.folder / "ensign.db").exists()

    # who is logging a run -----------------------------------------------------------------

    def _try_lock(self, run_uuid: str, *, wait: bool = False) -> IO[bytes] | None:
        """Lock a run for this spool object; ``None`` when another holds it and not ``wait``."""
        folder = self.folder / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / f"{run_uuid}.lock", "ab")  # noqa: SIM115 - held until close
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return handle

    def _hold(self, run_uuid: str) -> None:
        """Hold a run this process logs; waits while a sync of it finishes elsewhere."""
        if run_uuid not in self._locks:
            handle = self._try_lock(run_uuid, wait=True)
            assert handle is not None  # a waiting lock returns only once it holds
            self._locks[run_uuid] = handle

    # spooling -----------------------------------------------------------------------------

    def _mark(self, conn: sa.Connection, run_uuid: str, on_server: bool) -> None:
        key = f"{_MARK}{run_uuid}"
        conn.execute(settings.delete().where(settings.c.key == key))
        conn.execute(settings.insert().values(key=key, value=jsonio.dumps(on_server)))

    def start_run(
        self,
        project: str,
        run_uuid: str,
        *,
        name: str | None,
        description: str | None,
        tags: list[str],
    ) -> RunRecord:
        """Create (and hold) a run that the server has never seen."""
        self._hold(run_uuid)
        with write_transaction(self._registry.engine) as conn:
            record = run_ops.create_run(
                conn,
                project,
                name=name,
                description=description,
                tags=tags,
                environment={},
                run_uuid=run_uuid,
            )
            self._mark(conn, run_uuid, on_server=False)
        return record

    def adopt(self, record: RunRecord) -> None:
        """Make room (once per run) for what a run the server knows could not send."""
        self._hold(record.uuid)
        with write_transaction(self._registry.engine) as conn:
            exists = conn.execute(sa.select(runs.c.uuid).where(runs.c.uuid == record.uuid))
            if exists.first() is not None:
                return
            run_ops.create_run(
                conn,
                record.project,
                name=record.name,
                description=record.description,
                tags=[],
                environment={},
                run_uuid=record.uuid,
            )
            self._mark(conn, record.uuid, on_server=True)

    def keep_batch(self, batch: RunBatch) -> None:
        """Keep a batch the server may or may not have written, to send again under its key."""
        folder = self.folder / "batches" / batch.run_uuid
        folder.mkdir(parents=True, exist_ok=True)
        key = batch.key or os.urandom(16).hex()
        target = folder / f"{time.time_ns():020d}-{key}.json"
        partial = target.with_suffix(".part")
        partial.write_text(json.dumps({"key": key, "batch": batch_to_wire(batch)}))
        os.replace(partial, target)

    def pending(self) -> list[str]:
        """Return the ids of the spooled runs, oldest first."""
        if not self.exists():
            return []
        with self._registry.engine.connect() as conn:
            marked = [
                r.key[len(_MARK) :]
                for r in conn.execute(
                    sa.select(settings.c.key).where(settings.c.key.startswith(_MARK))
                )
            ]
            rows = conn.execute(
                sa.select(runs.c.uuid).where(runs.c.uuid.in_(marked)).order_by(runs.c.started_at)
            ).all()
        return [r.uuid for r in rows]

    def _on_server(self, run_uuid: str) -> bool:
        with self._registry.engine.connect() as conn:
            value = conn.execute(
                sa.select(settings.c.value).where(settings.c.key == f"{_MARK}{run_uuid}")
            ).scalar()
        return bool(jsonio.loads(value))

    # syncing ------------------------------------------------------------------------------

    def sync(self, remote: Backend) -> SyncReport:
        """Send every spooled run to the server behind ``remote``, then forget it.

        A run a live process is still logging is left for later (``busy``); a run the
        server refuses stays spooled (``failed``, with the reason) and the others go on.

        Raises:
            ServerUnavailable: the server cannot be reached (what was sent stays sent; the
                rest stays spooled).
        """
        synced: list[str] = []
        busy: list[str] = []
        failed: list[tuple[str, str]] = []
        points = blobs = 0
        for run_uuid in self.pending():
            held = run_uuid in self._locks
            handle = None if held else self._try_lock(run_uuid)
            if not held and handle is None:
                busy.append(run_uuid)
                continue
            try:
                sent_points, sent_blobs = self._sync_run(remote, run_uuid)
            except ServerUnavailable:
                raise
            except EnsignError as error:
                failed.append((run_uuid, str(error)))
                continue
            finally:
                if handle is not None:
                    handle.close()
            synced.append(run_uuid)
            points += sent_points
            blobs += sent_blobs
        return SyncReport(synced, points, blobs, busy, failed)

    def _sync_run(self, remote: Backend, run_uuid: str) -> tuple[int, int]:
        registry = remote.registry
        if isinstance(registry, RestRegistry):
            with registry.content_keys(f"sync:{run_uuid}"):
                return self._send_run(remote, run_uuid)
        return self._send_run(remote, run_uuid)

    def _send_run(self, remote: Backend, run_uuid: str) -> tuple[int, int]:
        local = self._registry
        record = local.get_run(run_uuid)
        if not self._on_server(run_uuid):
            # Conflict: created by an earlier sync that stopped before forgetting the run.
            with contextlib.suppress(Conflict):
                remote.registry.create_run(
                    record.project,
                    name=record.name,
                    description=record.description,
                    tags=record.tags,
                    environment=record.environment,
                    run_uuid=run_uuid,
                )
        points, kept_blobs = self._send_kept_batches(remote, run_uuid)
        history = local.get_metrics(run_uuid)
        rows = [
            (name, p.step, p.value, p.timestamp) for name, points in history.items() for p in points
        ]
        moved = [self._upload(remote, ref) for ref in local.list_refs(run_uuid)]
        batch = RunBatch(
            run_uuid=run_uuid,
            metrics=rows,
            params=dict(record.params),
            outputs=dict(record.outputs),
            environment=dict(record.environment),
            tags=list(record.tags),
            refs=[ref for ref, _ in moved],
        )
        if batch:
            remote.registry.write_batch(batch)
        for decision in local.list_decisions(run_uuid):
            remote.registry.record_decision(run_uuid, decision)
        if record.status != RunStatus.RUNNING.value:
            remote.registry.set_run_status(run_uuid, record.status, ended=True)
        self._forget(run_uuid)
        return points + len(rows), kept_blobs + sum(count for _, count in moved)

    def _send_kept_batches(self, remote: Backend, run_uuid: str) -> tuple[int, int]:
        """Send the batches kept for a run, each under its own key, oldest first."""
        points = blobs = 0
        folder = self.folder / "batches" / run_uuid
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            kept = json.loads(path.read_text())
            batch = batch_from_wire(run_uuid, kept["batch"])
            moved = [self._upload(remote, ref) for ref in batch.refs]  # bytes in the spool
            batch = replace(batch, refs=[ref for ref, _ in moved], key=kept["key"])
            remote.registry.write_batch(batch)
            points += len(batch.metrics)
            blobs += sum(count for _, count in moved)
            path.unlink()
        return points, blobs

    def _upload(self, remote: Backend, ref: ArtifactRef) -> tuple[ArtifactRef, int]:
        """Put a spooled ref's blobs in the server's store; return the ref pointing there."""
        if not ref.manifest or ref.store_uri is None or ref.store_uri == remote.store.uri:
            return ref, 0
        store = self.backend.store_for(ref.store_uri)
        assert isinstance(store, BlobStore)  # the spool is an embedded store
        uploaded = 0
        for entry in ref.manifest.values():
            blob = remote.store.put_file(store.blob_path(entry["digest"]), digest=entry["digest"])
            uploaded += int(blob.uploaded)
        return replace(ref, store_uri=remote.store.uri), uploaded

    def _forget(self, run_uuid: str) -> None:
        with write_transaction(self._registry.engine) as conn:
            for table in (metrics, params, refs, decisions):
                conn.execute(table.delete().where(table.c.run_uuid == run_uuid))
            conn.execute(runs.delete().where(runs.c.uuid == run_uuid))
            conn.execute(settings.delete().where(settings.c.key == f"{_MARK}{run_uuid}"))
        # What is left in the folder is a .part of a keep_batch cut short: never a batch.
        shutil.rmtree(self.folder / "batches" / run_uuid, ignore_errors=True)
