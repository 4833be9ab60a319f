"""Storage configs, one per provider type; importing them needs no optional package."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ensign.artifacts.base import StorageConfig

__all__ = ["FsspecConfig", "LocalConfig", "S3Config"]


@dataclass(frozen=True)
class S3Config(StorageConfig):
    """An S3 (or S3-compatible) bucket.

    Credentials and endpoint come from the standard places (``AWS_ACCESS_KEY_ID``,
    ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ...) unless given here.

    Attributes:
        bucket: The bucket.
        prefix: Keys start with it (no leading or trailing ``/``).
        endpoint_url: An S3-compatible endpoint.
        region: The bucket's region.
        user: The user part of keys (default: the login name).
        storage_options: Passed to s3fs (``key``, ``secret``, ``profile``, ...).
    """

    required: ClassVar[tuple[str, ...]] = ("bucket",)

    bucket: str | None = None
    prefix: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    user: str | None = None
    storage_options: dict[str, Any] | None = None


@dataclass(frozen=True)
class LocalConfig(StorageConfig):
    """A local folder; its URLs are signed with ensign's own HMAC signer.

    Attributes:
        root: The folder (a path or ``file://`` URL).
        base_url: Where a server serves the folder; signed URLs start with it (default:
            the folder's ``file://`` URL, readable only on this machine).
        signing_key: The file holding the HMAC secret (created when missing).
        user: The user part of keys (default: the login name).
    """

    required: ClassVar[tuple[str, ...]] = ("root", "signing_key")

    root: str | None = None
    base_url: str | None = None
    signing_key: str | None = None
    user: str | None = None


@dataclass(frozen=True)
class FsspecConfig(StorageConfig):
    """Any other fsspec store (``gs://``, ``az://``, ``memory://``, ...).

    Presigned URLs work where the fsspec filesystem can sign (``gcsfs``, ``adlfs``).

    Attributes:
        uri: The store's root URL.
        user: The user part of keys (default: the login name).
        storage_options: Passed to the fsspec filesystem.
    """

    required: ClassVar[tuple[str, ...]] = ("uri",)

    uri: str | None = None
    user: str | None = None
    storage_options: dict[str, Any] | None = None
