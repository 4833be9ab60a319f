"""Which fsspec protocols a store URL may use, and which extra installs each.

Modelled on fsspec's own registry: nothing is imported until a store is opened, and a
protocol whose package is missing fails with the ensign extra that installs it.
"""

from __future__ import annotations

from typing import Any

import fsspec
from fsspec.core import url_to_fs

from ensign.errors import StoreNotAvailable

__all__ = ["EXTRAS", "is_s3", "open_filesystem", "protocol_of"]

#: Protocol -> the ensign extra that installs its fsspec implementation.
EXTRAS: dict[str, str] = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "adl": "azure",
}


def protocol_of(uri: str) -> str:
    """Return the protocol of a store URL (``file`` for a plain path)."""
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def is_s3(uri: str) -> bool:
    """Whether a store URL is on S3 (or an S3-compatible store)."""
    return protocol_of(uri) in {"s3", "s3a"}


def open_filesystem(
    uri: str, storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the filesystem and root path of a store URL.

    Raises:
        StoreNotAvailable: when the protocol is unknown or its package is not installed;
            the message names the extra to install.
    """
    protocol = protocol_of(uri)
    try:
        fs, root = url_to_fs(uri, **(storage_options or {}))
    except ImportError as exc:
        raise StoreNotAvailable(protocol, EXTRAS.get(protocol), str(exc)) from exc
    except ValueError as exc:
        if "protocol" not in str(exc).lower():
            raise
        raise StoreNotAvailable(protocol, EXTRAS.get(protocol), str(exc)) from exc
    return fs, str(root).rstrip("/")
