"""Where metadata and bytes live: resolution of tracking and artifacts URIs.

The environment is read when a function is called, never at import time or in defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ensign.errors import ConfigurationError

__all__ = [
    "DEFAULT_FOLDER",
    "TrackingLocation",
    "resolve_artifacts_uri",
    "resolve_project",
    "resolve_tracking_uri",
    "tracking_location",
]

#: The folder the embedded default uses in the working directory.
DEFAULT_FOLDER = ".ensign"
_DB_FILE = "ensign.db"


@dataclass(frozen=True)
class TrackingLocation:
    """A resolved tracking URI.

    Attributes:
        uri: The tracking URI as resolved.
        database_url: The SQLAlchemy URL of the metadata database (``None`` for a server).
        default_artifacts_uri: Where bytes go when neither the caller nor the store names a
            place (``None`` when the store must be told once).
        local_folder: The folder of an embedded store, for caches next to it.
    """

    uri: str
    database_url: str | None
    default_artifacts_uri: str | None
    local_folder: Path | None

    @property
    def is_remote(self) -> bool:
        """Whether metadata lives behind an ``ensign server``."""
        return self.database_url is None


def resolve_tracking_uri(explicit: str | os.PathLike[str] | None = None) -> str:
    """Return the tracking URI: the argument, else ``ENSIGN_TRACKING_URI``, else ``./.ensign``."""
    if explicit is not None and str(explicit):
        return os.fspath(explicit)
    from_env = os.environ.get("ENSIGN_TRACKING_URI")
    if from_env:
        return from_env
    return str(Path.cwd() / DEFAULT_FOLDER)


def resolve_artifacts_uri(explicit: str | os.PathLike[str] | None = None) -> str | None:
    """Return the artifacts URI the caller asks for: the argument, else ``ENSIGN_ARTIFACTS_URI``."""
    if explicit is not None and str(explicit):
        return _absolute_if_local(os.fspath(explicit))
    from_env = os.environ.get("ENSIGN_ARTIFACTS_URI")
    return _absolute_if_local(from_env) if from_env else None


def resolve_project(explicit: str | None = None) -> str:
    """Return the project key: the argument, else ``ENSIGN_PROJECT``, else ``default``."""
    return explicit or os.environ.get("ENSIGN_PROJECT") or "default"


def tracking_location(uri: str) -> TrackingLocation:
    """Interpret a tracking URI.

    Raises:
        ConfigurationError: for a scheme ensign cannot track to.
    """
    lowered = uri.lower()
    if lowered.startswith(("http://", "https://")):
        return TrackingLocation(uri, None, None, None)
    if lowered.startswith("sqlite:"):
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        if not path or path == ":memory:":
            raise ConfigurationError(
                f"tracking URI {uri!r} names no database file; use sqlite:///path/to/file.db"
            )
        db = Path(path).expanduser().absolute()
        artifacts = db.with_name(db.stem + "-artifacts")
        return TrackingLocation(uri, f"sqlite:///{db}", artifacts.as_uri(), db.parent)
    if lowered.startswith(("postgresql", "postgres:")):
        url = uri.replace("postgres://", "postgresql+psycopg://", 1)
        if url.startswith("postgresql://"):
            url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        return TrackingLocation(uri, url, None, None)
    if lowered.startswith("file://"):
        uri = uri[len("file://") :]
    elif "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise ConfigurationError(
            f"unsupported tracking URI scheme {scheme!r}: use a folder, sqlite:///FILE, "
            "postgresql+psycopg://... or http(s)://HOST:PORT"
        )
    folder = Path(uri).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise ConfigurationError(f"tracking folder {str(folder)!r} exists and is not a folder")
    return TrackingLocation(
        str(folder), f"sqlite:///{folder / _DB_FILE}", (folder / "artifacts").as_uri(), folder
    )


def _absolute_if_local(uri: str) -> str:
    if "://" in uri:
        return uri
    return Path(uri).expanduser().absolute().as_uri()
