"""A ``Backend`` bundles what one tracking URI opens: the registry and the blob stores."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ensign.config import (
    TrackingLocation,
    resolve_artifacts_uri,
    resolve_tracking_uri,
    tracking_location,
)
from ensign.errors import ConfigurationError
from ensign.registry import Registry, open_registry
from ensign.storage.blobstore import BlobStore, GarbageReport, StoredBlob
from ensign.storage.hashing import Progress
from ensign.storage.statcache import StatCache

__all__ = ["ARTIFACTS_URI_SETTING", "Backend", "BlobStorage", "open_backend"]

#: The registry setting that remembers the first artifacts URI a store was given.
ARTIFACTS_URI_SETTING = "artifacts_uri"


def _stat_cache_path(location: TrackingLocation) -> Path:
    if location.local_folder is not None:
        return location.local_folder / "statcache.sqlite"
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "ensign" / "statcache.sqlite"


class BlobStorage(Protocol):
    """What a backend's store offers, embedded or behind a server.

    A :class:`~ensign.storage.blobstore.BlobStore` (bytes reached with the store's own
    credentials) or a :class:`~ensign.registry.rest.RemoteBlobStore` (bytes reached
    through an ``ensign server``'s signed URLs).
    """

    @property
    def uri(self) -> str:
        """The store's URI, as refs and versions record it."""
        ...

    def blob_uri(self, digest: str) -> str:
        """Return the URL of a blob (for display and lineage)."""
        ...

    def has(self, digest: str) -> bool:
        """Return whether the store holds the blob ``digest``."""
        ...

    def missing(self, digests: Iterable[str]) -> set[str]:
        """Return those of ``digests`` the store does not hold."""
        ...

    def digest_of(self, path: str | os.PathLike[str]) -> str:
        """Return the sha256 of a local file (from the stat cache when it is unchanged)."""
        ...

    def put_file(
        self,
        path: str | os.PathLike[str],
        *,
        digest: str | None = None,
        progress: Progress | None = None,
    ) -> StoredBlob:
        """Store a local file's bytes once."""
        ...

    def put_bytes(self, data: bytes) -> StoredBlob:
        """Store ``data`` once."""
        ...

    def get_file(
        self,
        digest: str,
        target: str | os.PathLike[str],
        *,
        label: str | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Copy a blob to a local file, verifying its digest; return its size."""
        ...

    def collect_garbage(
        self, referenced: set[str], *, grace_seconds: float = 3600.0, dry_run: bool = False
    ) -> GarbageReport:
        """Remove temporary objects and unreferenced blobs older than the grace period."""
        ...


@dataclass
class Backend:
    """The registry and blob stores behind one tracking URI.

    Attributes:
        location: The resolved tracking location.
        registry: Where metadata lives.
        store: The blob store new bytes go to.
        stat_cache: Digests of unchanged local files.
        storage_options: fsspec options for stores opened here.
        open_store: Opens another store by URI (``store_for``); a ``BlobStore`` with
            ``storage_options`` when ``None``.  A server's backend reaches every store
            through the server.
    """

    location: TrackingLocation
    registry: Registry
    store: BlobStorage
    stat_cache: StatCache
    storage_options: dict[str, Any] = field(default_factory=dict)
    open_store: Callable[[str], BlobStorage] | None = field(default=None, repr=False)
    _stores: dict[str, BlobStorage] = field(default_factory=dict, repr=False)

    @property
    def blob_store(self) -> BlobStore:
        """The store as a :class:`~ensign.storage.blobstore.BlobStore` (its filesystem).

        For code that works on the store itself: the server, ``ensign gc``, the spool.

        Raises:
            ConfigurationError: the store is a server's, reached only through the server.
        """
        if not isinstance(self.store, BlobStore):
            raise ConfigurationError(
                f"{self.location.uri} is a server: its store {self.store.uri} is reached "
                "only through it"
            )
        return self.store

    def store_for(self, uri: str | None) -> BlobStorage:
        """Return the blob store at ``uri`` (the default store when ``None`` or the same)."""
        if uri is None or uri.rstrip("/") == self.store.uri:
            return self.store
        if uri not in self._stores:
            if self.open_store is not None:
                self._stores[uri] = self.open_store(uri)
            else:
                self._stores[uri] = BlobStore(
                    uri, stat_cache=self.stat_cache, storage_options=self.storage_options
                )
        return self._stores[uri]

    def close(self) -> None:
        """Release the registry's connections and the stat cache."""
        self.registry.close()
        self.stat_cache.close()


def open_backend(
    tracking_uri: str | os.PathLike[str] | None = None,
    artifacts_uri: str | os.PathLike[str] | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
) -> Backend:
    """Open the registry and blob store for a tracking URI.

    The artifacts URI is the argument, else ``ENSIGN_ARTIFACTS_URI``, else the one the
    store remembers, else the store's default (a folder inside an embedded store).  The
    first one a store is given is remembered.

    For a server URI the registry is a :class:`~ensign.registry.rest.RestRegistry` and
    the store a :class:`~ensign.registry.rest.RemoteBlobStore`: the server chooses where
    bytes go and hands out signed URLs, so no store credentials are needed here.

    Raises:
        ConfigurationError: when no artifacts URI can be found (a PostgreSQL store that was
            never given one) or a URI is unusable; for a server, any ``artifacts_uri``
            (the server chooses).
        StoreNotAvailable: when the artifacts URI's protocol is not installed.
    """
    location = tracking_location(resolve_tracking_uri(tracking_uri))
    if location.is_remote:
        return _open_remote(location, artifacts_uri)
    registry = open_registry(location)
    try:
        asked = resolve_artifacts_uri(artifacts_uri)
        remembered = registry.get_setting(ARTIFACTS_URI_SETTING)
        chosen = asked or remembered or location.default_artifacts_uri
        if chosen is None:
            raise ConfigurationError(
                f"the tracking store {location.uri!r} has no artifacts URI yet: pass "
                "artifacts_uri=... or set ENSIGN_ARTIFACTS_URI once"
            )
        if remembered is None:
            registry.remember_setting(ARTIFACTS_URI_SETTING, chosen)
        stat_cache = StatCache(_stat_cache_path(location))
        options = dict(storage_options or {})
        store = BlobStore(chosen, stat_cache=stat_cache, storage_options=options)
    except BaseException:
        registry.close()
        raise
    return Backend(location, registry, store, stat_cache, options)


def _open_remote(
    location: TrackingLocation, artifacts_uri: str | os.PathLike[str] | None
) -> Backend:
    """Open the registry and store of an ``ensign server`` (see :func:`open_backend`).

    Nothing is sent yet: a server that cannot be reached shows at the first call (where
    a run falls back to the offline spool).
    """
    from ensign.registry.rest import RemoteBlobStore, RestRegistry

    if artifacts_uri is not None and str(artifacts_uri):
        raise ConfigurationError(
            f"the server {location.uri} chooses where bytes go; a client of a server takes "
            f"no artifacts URI (got {os.fspath(artifacts_uri)!r})"
        )
    registry = RestRegistry(location.uri)
    try:
        stat_cache = StatCache(_stat_cache_path(location))
    except BaseException:
        registry.close()
        raise
    store = RemoteBlobStore.of_server(registry.session, stat_cache=stat_cache)
    return Backend(location, registry, store, stat_cache, open_store=store.at)
