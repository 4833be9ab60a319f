"""The offline spool: where a run logs while its server cannot be reached, until synced.

A spool is an embedded ensign store (a SQLite file and a blob folder, the same format as
``./.ensign``) kept per server under ``$XDG_CACHE_HOME/ensign/spool/<host>-<port>/``.
A run that cannot reach its server at start lives there whole; a run that loses the
server midway sends there only what could not be delivered.  :meth:`Spool.sync` (run by
``ensign sync`` and at the next run start) sends each spooled run to the server and
then forgets it, so nothing is lost and nothing is sent twice: every request of a sync
carries an idempotency key derived from the run and what is sent, so a sync that is
interrupted and run again replays the server's first answers instead of writing twice.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import sqlalchemy as sa

from ensign import jsonio
from ensign.backend import Backend, open_backend
from ensign.errors import Conflict
from ensign.records import ArtifactRef, RunStatus
from ensign.records import Run as RunRecord
from ensign.registry import RunBatch
from ensign.registry.rest import RestRegistry
from ensign.registry.sql import SqlRegistry
from ensign.registry.sql import runs as run_ops
from ensign.registry.sql.engine import write_transaction
from ensign.registry.sql.schema import decisions, metrics, params, refs, runs, settings
from ensign.storage.blobstore import BlobStore

__all__ = ["Spool", "SyncReport", "spool_folder"]

_MARK = "spooled:"


def spool_folder(server_uri: str) -> Path:
    """Return the spool folder of a server (``$XDG_CACHE_HOME/ensign/spool/<host>-<port>``)."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", server_uri.split("://", 1)[-1]).strip("-.")
    return Path(cache_home) / "ensign" / "spool" / (name or "server")


@dataclass(frozen=True)
class SyncReport:
    """What :meth:`Spool.sync` sent.

    Attributes:
        runs: The ids of the runs now on the server.
        metrics: Metric points sent.
        blobs: Blobs uploaded.
    """

    runs: list[str]
    metrics: int
    blobs: int


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
        """Release the spool's store."""
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
        """Create a run that the server has never seen."""
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
        """Make room for what a run the server knows could not send (once per run)."""
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

    def pending(self) -> list[str]:
        """Return the ids of the spooled runs, oldest first."""
        if not self.exists():
            return []
        with self._registry.engine.connect() as conn:
            rows = conn.execute(
                sa.select(runs.c.uuid)
                .where(runs.c.uuid.in_(self._marked(conn)))
                .order_by(runs.c.started_at)
            ).all()
        return [r.uuid for r in rows]

    @staticmethod
    def _marked(conn: sa.Connection) -> list[str]:
        rows = conn.execute(sa.select(settings.c.key).where(settings.c.key.startswith(_MARK)))
        return [r.key[len(_MARK) :] for r in rows]

    def _on_server(self, run_uuid: str) -> bool:
        with self._registry.engine.connect() as conn:
            value = conn.execute(
                sa.select(settings.c.value).where(settings.c.key == f"{_MARK}{run_uuid}")
            ).scalar()
        return bool(jsonio.loads(value))

    # syncing ------------------------------------------------------------------------------

    def sync(self, remote: Backend) -> SyncReport:
        """Send every spooled run to the server behind ``remote``, then forget it.

        Raises:
            ServerUnavailable: the server still cannot be reached (what was sent stays
                sent; the rest stays spooled).
        """
        synced: list[str] = []
        points = blobs = 0
        for run_uuid in self.pending():
            sent_points, sent_blobs = self._sync_run(remote, run_uuid)
            synced.append(run_uuid)
            points += sent_points
            blobs += sent_blobs
        return SyncReport(synced, points, blobs)

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
        return len(rows), sum(count for _, count in moved)

    def _upload(self, remote: Backend, ref: ArtifactRef) -> tuple[ArtifactRef, int]:
        """Put a spooled ref's blobs in the server's store; return the ref pointing there."""
        if not ref.manifest or ref.store_uri is None:
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


def announce(message: str) -> None:
    """Tell the user about the spool, on stderr (once per event; no traceback)."""
    print(f"ensign: {message}", file=sys.stderr, flush=True)
