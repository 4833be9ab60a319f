"""``ensign server``: the REST API over a SQL registry and a blob store, with push and workers.

::

    from ensign.server import ServerSettings, create_app
    app = create_app(ServerSettings(tracking_uri="postgresql+psycopg://..."))
"""

from ensign.server.app import create_app
from ensign.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
