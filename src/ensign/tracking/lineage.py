"""The lineage half of a run: ``log_artifact_ref`` and its model/data/file/dir/code/env kin."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ensign import jsonio
from ensign.backend import Backend, BlobStorage
from ensign.errors import ArtifactNotFound, ServerUnavailable
from ensign.records import ArtifactRef
from ensign.storage.hashing import sha256_bytes
from ensign.tracking.environment import capture_environment, git_state
from ensign.tracking.refs import RefRequest, is_remote_path, store_ref
from ensign.tracking.spool import Spool
from ensign.tracking.uploads import UploadPool
from ensign.tracking.writer import BackgroundWriter

__all__ = ["LineageLogging"]


class LineageLogging:
    """Lineage log calls of :class:`~ensign.tracking.run.Run`; uploads run on its pool.

    The attributes below are set up by ``Run``; this class only groups the methods.
    """

    uuid: str
    backend: Backend
    _writer: BackgroundWriter
    _pool: UploadPool
    _ref_tickets: dict[tuple[str, bool], int]
    _ticket_lock: threading.Lock
    _check_open: Callable[[], None]
    _spooled: Callable[[], Spool]

    def _stored(
        self, put: Callable[[BlobStorage], ArtifactRef], add: Callable[[ArtifactRef], None]
    ) -> None:
        """Store a ref's bytes and queue the ref; when its server is away, spool both.

        A spooled ref names the spool's store; it goes through the writer, which spools
        every batch from then on, and ``ensign sync`` uploads its bytes to the server's
        store and points the ref there.
        """
        try:
            ref = put(self.backend.store)
        except ServerUnavailable:
            if not self.backend.location.is_remote:
                raise
            self._writer.spool_from_now()
            ref = put(self._spooled().backend.store)
        add(ref)

    def log_artifact_ref(
        self,
        path: str | os.PathLike[str],
        kind: str | None = None,
        name: str | None = None,
        hash: str | None = None,
        summary: dict[str, Any] | None = None,
        is_input: bool = False,
        rel_path: str | None = None,
        skip_hash_calculation: bool = False,
        upload: bool = True,
    ) -> None:
        """Log a file or folder the run consumed or produced; its bytes upload in the background.

        Args:
            path: A local file or folder, or an object-store URL (logged by reference).
            kind: ``file``, ``dir``, ``model``, ``data``, ``checkpoint``, ...; inferred
                from the path when omitted.
            name: Unique per run and direction (logging it again replaces it); defaults to
                the file name.
            hash: A known sha256; a stored file must match it.
            summary: Free-form details.
            is_input: Whether the run consumed it.
            rel_path: The file's name inside versions that carry it.
            skip_hash_calculation: Record the path only: no hash, no upload.
            upload: Store the bytes so versions can carry them.

        Raises:
            RunEnded: after ``end()``.
            ArtifactNotFound: when a local path does not exist.
        """
        self._check_open()
        text = os.fspath(path)
        local = None if is_remote_path(text) else Path(text.removeprefix("file://"))
        if local is not None and not local.exists():
            raise ArtifactNotFound(f"no such file or folder: {text}")
        if kind is None:
            kind = "dir" if local is not None and local.is_dir() else "file"
        request = RefRequest(
            run=self.uuid,
            name=name or (local.name if local is not None else text.rstrip("/").rsplit("/", 1)[-1]),
            kind=kind,
            path=str(local.absolute()) if local is not None else text,
            digest=hash,
            is_input=is_input,
            summary=dict(summary or {}),
            upload=upload and not skip_hash_calculation and local is not None,
            skip_hash=skip_hash_calculation,
            rel_path=rel_path,
        )
        self._submit_ref(request)

    def _ref_adder(self, name: str, is_input: bool) -> Callable[[ArtifactRef], None]:
        """Return what queues a ref, unless the same name is logged again meanwhile."""
        key = (name, is_input)
        with self._ticket_lock:
            ticket = self._ref_tickets[key] = self._ref_tickets.get(key, 0) + 1

        def add(ref: ArtifactRef) -> None:
            with self._ticket_lock:
                if self._ref_tickets[key] == ticket:
                    self._writer.add_ref(ref)

        return add

    def _submit_ref(self, request: RefRequest) -> None:
        add = self._ref_adder(request.name, request.is_input)
        self._pool.submit(lambda: self._stored(lambda store: store_ref(request, store), add))

    def log_model_ref(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        framework: str | None = None,
        summary: dict[str, Any] | None = None,
        is_input: bool = False,
    ) -> None:
        """Log a model file or folder (kind ``model``)."""
        details = dict(summary or {})
        if framework:
            details["framework"] = framework
        self.log_artifact_ref(path, kind="model", name=name, summary=details, is_input=is_input)

    def log_data_ref(
        self,
        name: str,
        hash: str | None = None,
        path: str | os.PathLike[str] | None = None,
        content: Any = None,
        summary: dict[str, Any] | None = None,
        is_input: bool = True,
    ) -> None:
        """Log a data set (kind ``data``), an input by default.

        Give a ``path`` (hashed, not uploaded), ``content`` (bytes or a JSON-able value,
        hashed) or a known ``hash``.
        """
        self._check_open()
        digest = hash
        if content is not None and digest is None:
            raw = content if isinstance(content, bytes) else jsonio.dumps(content).encode()
            digest = sha256_bytes(raw)
        if path is not None:
            self.log_artifact_ref(
                path,
                kind="data",
                name=name,
                hash=digest,
                summary=summary,
                is_input=is_input,
                upload=False,
            )
            return
        request = RefRequest(
            run=self.uuid,
            name=name,
            kind="data",
            path=None,
            digest=digest,
            is_input=is_input,
            summary=dict(summary or {}),
            upload=False,
            skip_hash=True,
        )
        self._submit_ref(request)

    def log_file_ref(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        hash: str | None = None,
        summary: dict[str, Any] | None = None,
        is_input: bool = False,
        rel_path: str | None = None,
    ) -> None:
        """Log a single file (kind ``file``)."""
        self.log_artifact_ref(
            path,
            kind="file",
            name=name,
            hash=hash,
            summary=summary,
            is_input=is_input,
            rel_path=rel_path,
        )

    def log_dir_ref(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        summary: dict[str, Any] | None = None,
        is_input: bool = False,
    ) -> None:
        """Log a folder (kind ``dir``); every file in it is stored."""
        self.log_artifact_ref(path, kind="dir", name=name, summary=summary, is_input=is_input)

    def log_code_ref(self, path: str | os.PathLike[str] | None = None) -> None:
        """Log the git commit, branch, remote and dirty flag of the code (kind ``coderef``)."""
        self._check_open()
        state = git_state(path)
        request = RefRequest(
            run=self.uuid,
            name="code",
            kind="coderef",
            path=state.get("root"),
            digest=None,
            is_input=True,
            summary=state,
            upload=False,
            skip_hash=True,
        )
        self._submit_ref(request)

    def log_env(self) -> None:
        """Store the environment as a JSON file and log it as an input (kind ``env``)."""
        self._check_open()
        uuid = self.uuid
        add = self._ref_adder("env", True)

        def job() -> None:
            environment = capture_environment()
            self._stored(lambda store: env_ref(store, environment), add)

        def env_ref(store: BlobStorage, environment: dict[str, Any]) -> ArtifactRef:
            blob = store.put_bytes(jsonio.dumps(environment).encode())
            return ArtifactRef(
                run=uuid,
                name="env",
                kind="env",
                uri=None,
                digest=blob.digest,
                size=blob.size,
                is_input=True,
                summary={"python": environment["python"], "host": environment["host"]},
                store_uri=store.uri,
                manifest={"environment.json": {"digest": blob.digest, "size": blob.size}},
            )

        self._pool.submit(job)
