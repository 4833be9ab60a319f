"""The registry: where metadata lives, behind one interface."""

from __future__ import annotations

from ensign.config import TrackingLocation
from ensign.registry.base import Registry, RunBatch, VersionSpec

__all__ = ["Registry", "RunBatch", "VersionSpec", "open_registry"]


def open_registry(location: TrackingLocation) -> Registry:
    """Open the registry a tracking location names.

    A server URI (``http(s)://host:port``) gives a
    :class:`~ensign.registry.rest.RestRegistry`, whose token is read from
    ``ENSIGN_TOKEN`` now; anything else a :class:`~ensign.registry.sql.SqlRegistry`.
    """
    if location.database_url is None:
        from ensign.registry.rest import RestRegistry

        return RestRegistry(location.uri)
    from ensign.registry.sql import SqlRegistry

    return SqlRegistry(location.database_url)
