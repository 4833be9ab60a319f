"""Pulling a version's files into a local folder, every digest verified."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from ensign import jsonio
from ensign.backend import Backend
from ensign.errors import IntegrityError, TargetNotEmpty
from ensign.records import ArtifactVersion
from ensign.storage.hashing import Progress

__all__ = ["METADATA_FILE", "pull_version"]

#: Written next to the pulled files: the version record as JSON.
METADATA_FILE = ".ensign-version.json"


def _safe_target(root: Path, relative: str) -> Path:
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or ".." in parts:
        raise IntegrityError(f"refusing to write {relative!r} outside the pull folder")
    return root.joinpath(*parts)


def pull_version(
    backend: Backend,
    version: ArtifactVersion,
    path: str | os.PathLike[str],
    *,
    download_artifacts: bool = True,
    force: bool = False,
    progress: Progress | None = None,
    on_file: Callable[[str, int], None] | None = None,
) -> Path:
    """Write a version's files under ``path`` and its record to ``.ensign-version.json``.

    Args:
        backend: Where the version's blobs are read from.
        version: The version to pull.
        path: The folder; created when missing.
        download_artifacts: Write the files (else only the record).
        force: Pull into a folder that already holds files.
        progress: Called with byte counts as files are written.
        on_file: Called with each file's path in the version and its size, before copying.

    Raises:
        TargetNotEmpty: ``path`` holds files and ``force`` is false.
        DigestMismatch: stored bytes no longer match; names the file.
    """
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise TargetNotEmpty(f"{root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not force:
        raise TargetNotEmpty(f"{root} is not empty; pass force=True (--force) to pull into it")
    root.mkdir(parents=True, exist_ok=True)
    if download_artifacts and version.manifest:
        store = backend.store_for(version.store_uri)
        for relative, entry in sorted(version.manifest.items()):
            target = _safe_target(root, relative)
            if on_file is not None:
                on_file(relative, int(entry["size"]))
            store.get_file(entry["digest"], target, label=relative, progress=progress)
    record = jsonio.to_jsonable(
        {
            "project": version.project,
            "kind": version.kind,
            "name": version.name,
            "description": version.description,
            "tags": version.tags,
            "content": version.content,
            "run": version.run,
            "artifacts": version.artifacts,
            "manifest": version.manifest,
            "stage": version.stage,
            "created_at": version.created_at.isoformat(),
        }
    )
    (root / METADATA_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
    return root
