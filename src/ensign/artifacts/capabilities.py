"""Which artifact providers a tracking store advertises.

An embedded store (a folder, SQLite or PostgreSQL) advertises one provider, derived from
the artifacts URI it uses: ``S3Config`` for ``s3://bucket/prefix``, ``LocalConfig`` for a
folder, ``FsspecConfig`` for any other fsspec URL.  A server (``http(s)://``) lists its
providers in ``GET /api/v1/capabilities`` under ``artifacts.providers``.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import unquote, urlparse

from ensign.artifacts.base import ProviderConfig
from ensign.config import resolve_tracking_uri, tracking_location
from ensign.errors import (
    ArtifactsException,
    InvalidProviderConfig,
    NoAdvertisedProviders,
    StoreNotAvailable,
    UnsupportedArtifactsType,
)
from ensign.storage.providers import protocol_of

__all__ = ["CAPABILITIES_PATH", "advertised_providers", "provider_for_store"]

#: Where a server answers with its capabilities.
CAPABILITIES_PATH = "/api/v1/capabilities"
#: The HMAC secret of a folder store's signed URLs, inside the tracking folder.
SIGNING_KEY_FILE = "signing.key"


def provider_for_store(
    artifacts_uri: str,
    *,
    storage_options: dict[str, Any] | None = None,
    signing_key: str | None = None,
) -> ProviderConfig:
    """Return the provider an embedded store with this artifacts URI advertises."""
    protocol = protocol_of(artifacts_uri)
    if protocol in {"s3", "s3a"}:
        bucket, _, prefix = artifacts_uri.split("://", 1)[1].partition("/")
        cfg: dict[str, Any] = {"bucket": bucket, "prefix": prefix.strip("/") or None}
        if storage_options:
            cfg["storage_options"] = dict(storage_options)
            cfg["endpoint_url"] = storage_options.get("endpoint_url")
        return ProviderConfig("default", "S3Config", cfg)
    if protocol in {"file", "local"}:
        root = artifacts_uri
        if root.startswith("file://"):
            root = unquote(urlparse(root).path)
        return ProviderConfig("default", "LocalConfig", {"root": root, "signing_key": signing_key})
    cfg = {"uri": artifacts_uri}
    if storage_options:
        cfg["storage_options"] = dict(storage_options)
    return ProviderConfig("default", "FsspecConfig", cfg)


def advertised_providers(
    tracking_uri: str | os.PathLike[str] | None = None,
) -> tuple[str, list[ProviderConfig]]:
    """Return where providers were asked for and what is advertised, preferred first.

    Raises:
        NoAdvertisedProviders: a server advertises none.
        InvalidProviderConfig: a server advertises a malformed provider.
        UnsupportedArtifactsType: the store's protocol needs a package that is missing.
        ArtifactsException: a server cannot be reached.
    """
    location = tracking_location(resolve_tracking_uri(tracking_uri))
    if location.is_remote:
        return location.uri, _server_providers(location.uri)
    from ensign.backend import open_backend

    try:
        backend = open_backend(tracking_uri)
    except StoreNotAvailable as exc:
        type_id = "S3Config" if exc.protocol in {"s3", "s3a"} else "FsspecConfig"
        raise UnsupportedArtifactsType(type_id, str(exc)) from exc
    try:
        signing_key = None
        if location.local_folder is not None:
            signing_key = str(location.local_folder / SIGNING_KEY_FILE)
        provider = provider_for_store(
            backend.store.uri, storage_options=backend.storage_options, signing_key=signing_key
        )
    finally:
        backend.close()
    return location.uri, [provider]


def _server_providers(base_url: str) -> list[ProviderConfig]:
    url = base_url.rstrip("/") + CAPABILITIES_PATH
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    token = os.environ.get("ENSIGN_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            document = json.loads(answer.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise NoAdvertisedProviders(base_url, f"{url} answered 404") from exc
        raise ArtifactsException(f"cannot read the capabilities of {base_url}: {exc}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ArtifactsException(f"cannot read the capabilities of {base_url}: {exc}") from exc
    artifacts = document.get("artifacts") if isinstance(document, dict) else None
    if not isinstance(artifacts, dict) or not artifacts.get("providers"):
        raise NoAdvertisedProviders(base_url)
    providers = artifacts["providers"]
    if not isinstance(providers, list):
        raise InvalidProviderConfig(f"{url}: artifacts.providers must be a list")
    return [ProviderConfig.from_dict(item) for item in providers]
