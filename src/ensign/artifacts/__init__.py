"""Stage a file in the store's own storage and hand out a time-limited URL for it.

The API mirrors openEO's ``openeo.extra.artifacts``::

    from ensign.artifacts import build_artifact_helper

    helper = build_artifact_helper()                    # the store of ./.ensign (or a URI)
    storage_uri = helper.upload_file("model.onnx")      # s3://bucket/prefix/artifacts/...
    url = helper.get_presigned_url(storage_uri, expires_in_seconds=3600)

The helper's type follows the provider the store advertises (``S3Config`` for an S3
store, ``LocalConfig`` for a folder, ``FsspecConfig`` for other fsspec stores); a
``config`` of the same type overrides some of its values.  Errors derive from
:class:`ArtifactsException`.
"""

from __future__ import annotations

import os

from ensign.artifacts.base import (
    DEFAULT_EXPIRES_IN,
    ArtifactHelper,
    ProviderConfig,
    StorageConfig,
)
from ensign.artifacts.capabilities import advertised_providers
from ensign.artifacts.configs import FsspecConfig, LocalConfig, S3Config
from ensign.artifacts.registry import (
    available_provider_types,
    get_helper_class,
    register_provider_type,
)
from ensign.errors import (
    ArtifactsException,
    InvalidArtifactArgument,
    InvalidProviderConfig,
    NoAdvertisedProviders,
    NoDefaultConfig,
    ProviderSpecificException,
    UnsupportedArtifactsType,
)

__all__ = [
    "DEFAULT_EXPIRES_IN",
    "ArtifactHelper",
    "ArtifactsException",
    "FsspecConfig",
    "InvalidArtifactArgument",
    "InvalidProviderConfig",
    "LocalConfig",
    "NoAdvertisedProviders",
    "NoDefaultConfig",
    "ProviderConfig",
    "ProviderSpecificException",
    "S3Config",
    "StorageConfig",
    "UnsupportedArtifactsType",
    "available_provider_types",
    "build_artifact_helper",
    "register_provider_type",
]


def build_artifact_helper(
    tracking_uri: str | os.PathLike[str] | None = None,
    config: StorageConfig | None = None,
) -> ArtifactHelper:
    """Return the artifact helper for the provider a store advertises.

    Args:
        tracking_uri: The tracking store (default: ``ENSIGN_TRACKING_URI``, else
            ``./.ensign``); an embedded store advertises the provider of its artifacts
            URI, a server those of its capabilities.
        config: A storage config (``S3Config(...)``, ``LocalConfig(...)``, ...) whose set
            fields override the provider's; its type must be one the store advertises.

    Raises:
        NoAdvertisedProviders: the store advertises no provider.
        UnsupportedArtifactsType: ``config``'s type is not advertised, no helper is known
            for the advertised type, or its package is not installed (with the extra).
        NoDefaultConfig: a required value is neither in ``config`` nor advertised.
        InvalidProviderConfig: the advertised provider is malformed.
    """
    if config is not None and not isinstance(config, StorageConfig):
        raise InvalidProviderConfig(
            f"config must be a storage config such as S3Config(...) or LocalConfig(...), "
            f"got {type(config).__name__}"
        )
    where, providers = advertised_providers(tracking_uri)
    if not providers:
        raise NoAdvertisedProviders(where)
    if config is None:
        provider = providers[0]
    else:
        wanted = config.type_id()
        matching = [p for p in providers if p.type == wanted]
        if not matching:
            offered = ", ".join(p.type for p in providers)
            raise UnsupportedArtifactsType(wanted, f"{where} advertises only {offered}")
        provider = matching[0]
    helper_class = get_helper_class(provider.type)
    return helper_class.from_provider(provider, config)
