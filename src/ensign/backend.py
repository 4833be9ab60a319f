"""A ``Backend`` bundles what one tracking URI opens: the registry and the blob stores."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ensign.config import (
    TrackingLocation,
    resolve_artifacts_uri,
    resolve_tracking_uri,
    tracking_location,
)
from ensign.errors import ConfigurationError
from ensign.registry import Registry, open_registry
from ensign.storage.blobstore import BlobStore
from ensign.storage.statcache import StatCache

__all__ = ["ARTIFACTS_URI_SETTING", "Backend", "open_backend"]

#: The registry setting that remembers the first artifacts URI a store was given.
ARTIFACTS_URI_SETTING = "artifacts_uri"


def _stat_cache_path(location: TrackingLocation) -> Path:
    if location.local_folder is not None:
        return location.local_folder / "statcache.sqlite"
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "ensign" / "statcache.sqlite"


@dataclass
class Backend:
    """The registry and blob stores behind one tracking URI.

    Attributes:
        location: The resolved tracking location.
        registry: Where metadata lives.
        store: The blob store new bytes go to.
        stat_cache: Digests of unchanged local files.
    """

    location: TrackingLocation
    registry: Registry
    store: BlobStore
    stat_cache: StatCache
    storage_options: dict[str, Any] = field(default_factory=dict)
    _stores: dict[str, BlobStore] = field(default_factory=dict, repr=False)

    def store_for(self, uri: str | None) -> BlobStore:
        """Return the blob store at ``uri`` (the default store when ``None`` or the same)."""
        if uri is None or uri.rstrip("/") == self.store.uri:
            return self.store
        if uri not in self._stores:
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

    Raises:
        ConfigurationError: when no artifacts URI can be found (a PostgreSQL store that was
            never given one) or a URI is unusable.
        StoreNotAvailable: when the artifacts URI's protocol is not installed.
    """
    location = tracking_location(resolve_tracking_uri(tracking_uri))
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
