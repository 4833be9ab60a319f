"""sha256 of files and folders; a folder's digest is the digest of its manifest."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "CHUNK_SIZE",
    "ManifestEntry",
    "Progress",
    "iter_files",
    "manifest_digest",
    "sha256_bytes",
    "sha256_file",
]

#: Bytes read at a time when hashing or copying.
CHUNK_SIZE = 8 * 1024 * 1024
#: Called with the number of bytes just moved.
Progress = Callable[[int], None]
#: ``{"digest": sha256, "size": bytes}``.
ManifestEntry = dict[str, Any]


def sha256_bytes(data: bytes) -> str:
    """Return the hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], progress: Progress | None = None) -> str:
    """Return the hex sha256 of a local file."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
            if progress is not None:
                progress(count)
    return digest.hexdigest()


def iter_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """Yield ``(relative posix path, path)`` of every regular file under ``folder``, sorted.

    Links are followed only when they point to files; hidden files are included.
    """
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.is_file():
                yield path.relative_to(folder).as_posix(), path


def manifest_digest(manifest: dict[str, ManifestEntry]) -> str:
    """Return the digest of a folder: sha256 of its canonical manifest (path -> digest)."""
    canonical = json.dumps(
        {path: entry["digest"] for path, entry in sorted(manifest.items())},
        separators=(",", ":"),
        sort_keys=True,
    )
    return sha256_bytes(canonical.encode())
