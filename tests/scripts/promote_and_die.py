"""Promote a run and get killed with SIGKILL at a chosen moment of the promotion.

Usage: promote_and_die.py TRACKING_DIR DATA_FILE KILL_POINT MARKER_DIR

KILL_POINT is where the process kills itself:
  upload     in the middle of writing the file's bytes to the store (after 16 MiB)
  publish    the bytes are complete in tmp/, just before they are published as a blob
  published  the blob is published, before its lineage ref is recorded
  commit     inside the version's database transaction, before it commits
  committed  right after the version is committed
  none       never (the test kills it from outside after a delay)
Prints the run id first; writes MARKER_DIR/started just before logging the file.
Exits with status 3 if a kill point was never reached.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from ensign import tracking
from ensign.registry.sql import versions as version_ops
from ensign.registry.sql.registry import SqlRegistry
from ensign.storage.blobstore import BlobStore

tracking_dir, data_file, kill_point, marker_dir = sys.argv[1:5]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _DyingWriter:
    """A writable that kills the process once 16 MiB went through it."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.written = 0

    def write(self, data: bytes) -> Any:
        result = self.handle.write(data)
        self.written += len(data)
        if self.written >= 16 * 1024 * 1024:
            self.handle.flush()
            die()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> _DyingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.__exit__(*exc)


if kill_point == "upload":
    open_write = BlobStore._open_write
    BlobStore._open_write = lambda self, path: _DyingWriter(open_write(self, path))  # type: ignore[method-assign]
elif kill_point in ("publish", "published"):
    publish = BlobStore._publish

    def _publish(self: BlobStore, tmp: str, digest: str) -> Any:
        if kill_point == "publish":
            die()
        result = publish(self, tmp, digest)
        die()
        return result

    BlobStore._publish = _publish  # type: ignore[method-assign]
elif kill_point == "commit":
    create = version_ops.create_version

    def _create(*args: Any, **kwargs: Any) -> Any:
        create(*args, **kwargs)  # the rows are written; the transaction is still open
        die()

    version_ops.create_version = _create  # type: ignore[assignment]
elif kill_point == "committed":
    registry_create = SqlRegistry.create_version

    def _registry_create(self: SqlRegistry, *args: Any, **kwargs: Any) -> Any:
        registry_create(self, *args, **kwargs)
        die()

    SqlRegistry.create_version = _registry_create  # type: ignore[method-assign]
elif kill_point != "none":
    sys.exit(f"unknown kill point {kill_point!r}")

run = tracking.init(project="crash", name=kill_point, tracking_uri=tracking_dir)
print(run.uuid, flush=True)
tracking.log_metric("acc", 0.9)
run.flush()
(Path(marker_dir) / "started").touch()
tracking.log_model_ref(data_file, name="model")
tracking.promote_to_model_version(when="acc > 0.5")
tracking.end()
sys.exit(0 if kill_point == "none" else 3)
