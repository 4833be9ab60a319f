"""What one server process holds: the backend, the signer and its settings."""

from __future__ import annotations

import secrets
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from ensign.backend import Backend, open_backend
from ensign.config import resolve_tracking_uri, tracking_location
from ensign.errors import ConfigurationError
from ensign.registry.sql import SqlRegistry
from ensign.registry.sql.engine import (
    HEAD_REVISION,
    create_engine,
    current_revision,
    write_transaction,
)
from ensign.registry.sql.engine import upgrade as upgrade_schema
from ensign.registry.sql.tokens import create_token, has_admin_token
from ensign.server.settings import ServerSettings
from ensign.storage.blobstore import BlobStore
from ensign.storage.signing import HmacSigner

if TYPE_CHECKING:
    from ensign.storage.s3 import S3Presigner

__all__ = [
    "SIGNING_SECRET_SETTING",
    "Presigners",
    "ServerState",
    "check_schema",
    "open_state",
    "open_store",
]

#: The registry setting holding the HMAC secret every server process of a store shares.
SIGNING_SECRET_SETTING = "signing_secret"


class Presigners:
    """One S3 presigner per store, made on first use (a botocore client is slow to make)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_store: dict[str, S3Presigner] = {}

    def get(self, store: BlobStore) -> S3Presigner:
        """Return the presigner with the credentials and endpoint of an S3 store."""
        from ensign.storage.s3 import S3Presigner

        with self._lock:
            if store.uri not in self._by_store:
                self._by_store[store.uri] = S3Presigner.for_filesystem(store.fs)
            return self._by_store[store.uri]


@dataclass
class ServerState:
    """The long-lived parts of a server process.

    Attributes:
        settings: What the server was started with.
        backend: The SQL registry and the blob store.
        registry: The same registry, typed as SQL (tokens, jobs and pushes live there too).
        signer: Signs and checks the URLs the server serves itself (folder stores).
        presigners: Sign the URLs of S3 stores.
    """

    settings: ServerSettings
    backend: Backend
    registry: SqlRegistry
    signer: HmacSigner
    presigners: Presigners = field(default_factory=Presigners)

    def close(self) -> None:
        """Release connections."""
        self.backend.close()


def check_schema(database_url: str, *, migrate: bool) -> None:
    """Make sure the database's schema is the one this ensign writes.

    SQLite stores (one machine) are brought up to date, as embedded clients do;
    PostgreSQL is migrated only by ``ensign db upgrade`` (or ``migrate=True``), so that
    many servers never race to change a shared schema.

    Raises:
        ConfigurationError: a PostgreSQL schema that is not at the head revision.
    """
    engine = create_engine(database_url)
    try:
        revision = current_revision(engine)
        if revision == HEAD_REVISION:
            return
        if migrate or engine.dialect.name == "sqlite":
            upgrade_schema(engine)
            return
        found = "no schema" if revision is None else f"schema revision {revision}"
        raise ConfigurationError(
            f"the database has {found}, this ensign needs {HEAD_REVISION}: run "
            "'ensign db upgrade --tracking-uri URI' first"
        )
    finally:
        engine.dispose()


def open_store(settings: ServerSettings, who: str) -> tuple[Backend, SqlRegistry]:
    """Open the store a server or a worker works on, after checking its schema.

    Args:
        settings: The store's tracking and artifacts URIs, and whether to migrate.
        who: The command, for the error message.

    Raises:
        ConfigurationError: a server URI as tracking URI, or a schema that is behind.
    """
    location = tracking_location(resolve_tracking_uri(settings.tracking_uri))
    if location.database_url is None:
        raise ConfigurationError(
            f"{who} needs the store's database (a folder, sqlite:///FILE or "
            f"postgresql+psycopg://...), not another server ({location.uri})"
        )
    check_schema(location.database_url, migrate=settings.migrate)
    backend = open_backend(location.uri, settings.artifacts_uri)
    registry = backend.registry
    assert isinstance(registry, SqlRegistry)  # a database URL opens the SQL registry
    return backend, registry


def open_state(settings: ServerSettings, *, announce: TextIO | None = None) -> ServerState:
    """Open the store a server serves, checking its schema and its administrator token.

    When no administrator token exists yet, one is made and written to ``announce``
    (standard output by default): it is shown only this once.

    Raises:
        ConfigurationError: a server URI as tracking URI, or a schema that is behind.
    """
    backend, registry = open_store(settings, "ensign server")
    try:
        secret = registry.remember_setting(SIGNING_SECRET_SETTING, secrets.token_hex(32))
        signer = HmacSigner(bytes.fromhex(secret))
        token = _first_admin_token(registry)
        if token is not None:
            out = announce if announce is not None else sys.stdout
            out.write(f"ensign: administrator token (shown once): {token}\n")
            out.flush()
    except BaseException:
        backend.close()
        raise
    return ServerState(settings, backend, registry, signer)


def _first_admin_token(registry: SqlRegistry) -> str | None:
    with write_transaction(registry.engine) as conn:
        if has_admin_token(conn):
            return None
        return create_token(conn, role="admin", name="first start")
