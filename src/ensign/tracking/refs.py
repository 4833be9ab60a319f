"""Turning a logged path into a lineage ref: hash it, store its bytes, describe it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ensign.errors import ArtifactNotFound
from ensign.records import ArtifactRef
from ensign.storage.hashing import iter_files, manifest_digest

if TYPE_CHECKING:
    from ensign.backend import BlobStorage

__all__ = ["RefRequest", "is_remote_path", "store_ref"]


def is_remote_path(path: str) -> bool:
    """Whether ``path`` is a URL of an object store (logged by reference, not copied)."""
    return "://" in path and not path.startswith("file://")


@dataclass(frozen=True)
class RefRequest:
    """A ref as the caller logged it, before its bytes are handled.

    Attributes:
        path: A local file or folder, a store URL, or ``None`` for a ref without bytes.
        upload: Store the bytes (local paths only).
        skip_hash: Neither hash nor store (the caller vouches for ``digest`` or needs none).
        rel_path: The file's name inside versions that carry it (files only).
    """

    run: str
    name: str
    kind: str
    path: str | None
    digest: str | None
    is_input: bool
    summary: dict[str, Any]
    upload: bool
    skip_hash: bool
    rel_path: str | None = None


def _file_ref(request: RefRequest, store: BlobStorage, source: Path) -> ArtifactRef:
    relative = request.rel_path or source.name
    if request.upload:
        blob = store.put_file(source, digest=request.digest)
        return _ref(
            request, blob.digest, blob.size, {relative: _entry(blob.digest, blob.size)}, store
        )
    size = source.stat().st_size
    digest = request.digest or (None if request.skip_hash else store.digest_of(source))
    return _ref(request, digest, size, {}, None)


def _dir_ref(request: RefRequest, store: BlobStorage, source: Path) -> ArtifactRef:
    manifest: dict[str, dict[str, Any]] = {}
    for relative, path in iter_files(source):
        if request.upload:
            blob = store.put_file(path)
            manifest[relative] = _entry(blob.digest, blob.size)
        elif not request.skip_hash:
            manifest[relative] = _entry(store.digest_of(path), path.stat().st_size)
    size = sum(int(e["size"]) for e in manifest.values())
    digest = request.digest or (manifest_digest(manifest) if manifest else None)
    return _ref(request, digest, size, manifest if request.upload else {}, store)


def _entry(digest: str, size: int) -> dict[str, Any]:
    return {"digest": digest, "size": size}


def _ref(
    request: RefRequest,
    digest: str | None,
    size: int | None,
    manifest: dict[str, dict[str, Any]],
    store: BlobStorage | None,
) -> ArtifactRef:
    return ArtifactRef(
        run=request.run,
        name=request.name,
        kind=request.kind,
        uri=request.path,
        digest=digest,
        size=size,
        is_input=request.is_input,
        summary=request.summary,
        store_uri=store.uri if manifest and store is not None else None,
        manifest=manifest,
    )


def store_ref(request: RefRequest, store: BlobStorage) -> ArtifactRef:
    """Hash (and unless asked not to, store) the bytes a request names; return its ref.

    Raises:
        ArtifactNotFound: when a local path does not exist.
        DigestMismatch: when a given digest does not match the bytes.
    """
    if request.path is None or is_remote_path(request.path):
        return _ref(request, request.digest, None, {}, None)
    source = Path(request.path.removeprefix("file://"))
    if source.is_dir():
        return _dir_ref(request, store, source)
    if source.is_file():
        return _file_ref(request, store, source)
    raise ArtifactNotFound(f"no such file or folder: {os.fspath(source)}")
