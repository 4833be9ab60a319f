"""The REST client of ``ensign server``: the registry and the blob store over HTTP.

::

    from ensign.registry.rest import RemoteBlobStore, RestRegistry
    registry = RestRegistry("http://127.0.0.1:8765")          # token from ENSIGN_TOKEN
    store = RemoteBlobStore.of_server(registry.session)
"""

from ensign.registry.rest.registry import RestRegistry
from ensign.registry.rest.session import RestSession
from ensign.registry.rest.store import RemoteBlobStore

__all__ = ["RemoteBlobStore", "RestRegistry", "RestSession"]
