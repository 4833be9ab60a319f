"""The registry: where metadata lives, behind one interface."""

from __future__ import annotations

from ensign.config import TrackingLocation
from ensign.errors import ConfigurationError
from ensign.registry.base import Registry, RunBatch, VersionSpec

__all__ = ["Registry", "RunBatch", "VersionSpec", "open_registry"]


def open_registry(location: TrackingLocation) -> Registry:
    """Open the registry a tracking location names.

    Raises:
        ConfigurationError: for a server URI (remote tracking comes with ``ensign server``).
    """
    if location.database_url is None:
        raise ConfigurationError(
            f"tracking URI {location.uri!r} names a server; this release of ensign tracks to a "
            "folder, sqlite:///FILE or postgresql+psycopg://... only"
        )
    from ensign.registry.sql import SqlRegistry

    return SqlRegistry(location.database_url)
