"""What every artifact helper shares: provider configs, storage configs, object keys.

A store (embedded) or a server advertises *providers*: ``{"id", "type", "cfg"}`` objects
whose ``type`` names a storage config class (``S3Config``, ``LocalConfig``, ...) and whose
``cfg`` holds that config's defaults.  A caller may pass a config of the same type to
override some of them; the rest come from the provider.
"""

from __future__ import annotations

import dataclasses
import datetime
import getpass
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ensign.errors import (
    ArtifactNotFound,
    InvalidArtifactArgument,
    InvalidProviderConfig,
    NoDefaultConfig,
)
from ensign.storage.hashing import Progress
from ensign.storage.signing import MAX_EXPIRES_IN, check_expires_in

__all__ = [
    "DEFAULT_EXPIRES_IN",
    "ArtifactHelper",
    "ProviderConfig",
    "StorageConfig",
    "check_object_name",
    "current_user",
]

#: The default lifetime of a presigned URL: 7 days, the most S3 allows.
DEFAULT_EXPIRES_IN = MAX_EXPIRES_IN
#: Longest object name accepted (S3 keys are at most 1024 bytes, prefix included).
MAX_OBJECT_NAME_BYTES = 512

_UNSAFE_USER = re.compile(r"[^A-Za-z0-9._-]+")
_ConfigT = TypeVar("_ConfigT", bound="StorageConfig")


@dataclass(frozen=True)
class ProviderConfig:
    """One provider a store advertises.

    Attributes:
        id: The provider's id (``default`` for an embedded store).
        type: The storage config type it takes, e.g. ``S3Config``.
        cfg: Default values of that config's fields.
    """

    id: str
    type: str
    cfg: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: object) -> ProviderConfig:
        """Read an advertised ``{"id", "type", "cfg"}`` object.

        Raises:
            InvalidProviderConfig: a field is missing or has the wrong type.
        """
        if not isinstance(data, Mapping):
            raise InvalidProviderConfig(f"a provider config must be an object, got {data!r}")
        missing = [k for k in ("id", "type", "cfg") if k not in data]
        if missing:
            raise InvalidProviderConfig(
                f"provider config {dict(data)!r} lacks {', '.join(missing)}: "
                "it needs id, type and cfg"
            )
        if not isinstance(data["id"], str) or not isinstance(data["type"], str):
            raise InvalidProviderConfig(f"provider id and type must be strings in {dict(data)!r}")
        if not isinstance(data["cfg"], Mapping):
            raise InvalidProviderConfig(f"provider cfg must be an object in {dict(data)!r}")
        return cls(data["id"], data["type"], dict(data["cfg"]))

    def to_dict(self) -> dict[str, Any]:
        """Return the advertised form, as a server's capabilities carry it."""
        return {"id": self.id, "type": self.type, "cfg": dict(self.cfg)}

    def get_key(self, key: str) -> Any:
        """Return the advertised default of ``key``.

        Raises:
            NoDefaultConfig: the provider advertises no value for it.
        """
        if self.cfg.get(key) is None:
            raise NoDefaultConfig(key, self.type)
        return self.cfg[key]


@dataclass(frozen=True)
class StorageConfig:
    """Base of the storage configs; a field left ``None`` takes the provider's default.

    The config's type (what providers advertise) is its class name.
    """

    #: Fields that must have a value once the provider's defaults are applied.
    required: ClassVar[tuple[str, ...]] = ()
    #: Fields whose values must be mappings (the rest must be strings).
    mappings: ClassVar[tuple[str, ...]] = ("storage_options",)

    @classmethod
    def type_id(cls) -> str:
        """Return the type a provider advertises for this config (the class name)."""
        return cls.__name__

    def merged_with(self: _ConfigT, provider: ProviderConfig | None) -> _ConfigT:
        """Return this config with its unset fields taken from ``provider``.

        Raises:
            NoDefaultConfig: a required field is neither set nor advertised.
            InvalidProviderConfig: an advertised value has the wrong type.
        """
        values: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value is None and provider is not None:
                value = provider.cfg.get(item.name)
                if value is not None:
                    _check_type(provider, item.name, value, item.name in self.mappings)
            values[item.name] = value
        for name in self.required:
            if values.get(name) in (None, ""):
                raise NoDefaultConfig(name, self.type_id())
        return dataclasses.replace(self, **values)


def _check_type(provider: ProviderConfig, name: str, value: Any, mapping: bool) -> None:
    ok = isinstance(value, Mapping) if mapping else isinstance(value, str)
    if not ok:
        kind = "an object" if mapping else "a string"
        raise InvalidProviderConfig(
            f"provider {provider.id!r} ({provider.type}) advertises {name}={value!r}; "
            f"expected {kind}"
        )


def current_user() -> str:
    """Return the name objects are namespaced by: the login name, made path-safe."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers)
        name = f"uid{os.getuid()}" if hasattr(os, "getuid") else "user"
    return _UNSAFE_USER.sub("_", name).strip("._") or "user"


def check_object_name(name: object) -> str:
    """Return ``name`` when it is a safe relative object name (``a.bin``, ``dir/a.bin``).

    Raises:
        InvalidArtifactArgument: an empty name, an absolute path, a ``..`` or ``.``
            segment, an empty segment, a backslash or a control character.
    """
    if not isinstance(name, str) or not name:
        raise InvalidArtifactArgument(f"an object name must be a non-empty string, got {name!r}")
    if len(name.encode()) > MAX_OBJECT_NAME_BYTES:
        raise InvalidArtifactArgument(
            f"object name is {len(name.encode())} bytes long; at most "
            f"{MAX_OBJECT_NAME_BYTES} are allowed"
        )
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise InvalidArtifactArgument(
            f"object name {name!r} must be relative, not an absolute path"
        )
    if "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidArtifactArgument(
            f"object name {name!r} must not contain backslashes or control characters"
        )
    parts = name.split("/")
    if ".." in parts or "." in parts:
        raise InvalidArtifactArgument(f"object name {name!r} must not contain '.' or '..' parts")
    if "" in parts:
        raise InvalidArtifactArgument(
            f"object name {name!r} has an empty part ('//' or '/' at the end)"
        )
    return name


class ArtifactHelper(ABC):
    """Stages files in a provider's storage and signs time-limited URLs for them.

    Keys are namespaced by user and UTC date:
    ``<prefix>/artifacts/<user>/<YYYY>/<MM>/<DD>/<object_name>``.

    Args:
        config: The storage config, already merged with the provider's defaults.
    """

    #: The storage config class this helper takes.
    config_class: ClassVar[type[StorageConfig]]

    def __init__(self, config: StorageConfig) -> None:
        self.config = config

    @classmethod
    def from_provider(
        cls, provider: ProviderConfig | None, config: StorageConfig | None = None
    ) -> ArtifactHelper:
        """Build a helper from an advertised provider and an optional overriding config.

        Raises:
            NoDefaultConfig: a required value is neither in ``config`` nor advertised.
            InvalidProviderConfig: the provider advertises a value of the wrong type.
        """
        base = config if config is not None else cls.config_class()
        return cls(base.merged_with(provider))

    def object_key(self, object_name: str, *, now: datetime.datetime | None = None) -> str:
        """Return the key ``object_name`` is stored under (without the store's prefix)."""
        user = getattr(self.config, "user", None) or current_user()
        stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y/%m/%d")
        return f"artifacts/{user}/{stamp}/{check_object_name(object_name)}"

    @staticmethod
    def _source(path: str | os.PathLike[str]) -> Path:
        source = Path(path)
        if not source.exists():
            raise ArtifactNotFound(f"no such file: {source}")
        if not source.is_file():
            raise InvalidArtifactArgument(
                f"{source} is not a regular file; upload_file takes a file"
            )
        return source

    @abstractmethod
    def upload_file(
        self,
        path: str | os.PathLike[str],
        object_name: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> str:
        """Store a local file in the provider's storage and return its storage URI.

        Args:
            path: The file.
            object_name: The last part of the key; the file's name when omitted or empty
                (as in the reference).  May hold ``/`` but no ``..``, and must not be
                absolute.
            progress: Called with the number of bytes just sent (for progress bars).

        Raises:
            ArtifactNotFound: ``path`` does not exist.
            InvalidArtifactArgument: a bad object name, or ``path`` is not a file.
            IntegrityError: the file changed while it was uploaded; nothing was stored.
            ProviderSpecificException: the storage refused (missing bucket, credentials).
        """

    @abstractmethod
    def get_presigned_url(
        self, storage_uri: str, expires_in_seconds: int = DEFAULT_EXPIRES_IN
    ) -> str:
        """Return a URL that fetches ``storage_uri`` without credentials until it expires.

        Keep it secret: whoever holds it can read the object.

        Args:
            storage_uri: A URI that :meth:`upload_file` returned (this provider's scheme).
            expires_in_seconds: Lifetime, 1 to 604800 (7 days).

        Raises:
            InvalidArtifactArgument: an expiry out of range or a URI of another store.
        """

    @staticmethod
    def _check_expiry(expires_in_seconds: int) -> int:
        return check_expires_in(expires_in_seconds)
