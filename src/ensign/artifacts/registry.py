"""Which artifact helper serves each provider type; modelled on fsspec's ``registry``.

Nothing is imported until a type is asked for, so a helper whose package is missing
costs nothing until it is used, and then fails with the extra to install::

    register_provider_type("MyConfig", "mypackage.helpers.MyHelper", errtxt="pip install mypackage")
    get_helper_class("S3Config")      # imports ensign.artifacts.s3 (and s3fs) now
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ensign.errors import UnsupportedArtifactsType

if TYPE_CHECKING:
    from ensign.artifacts.base import ArtifactHelper

__all__ = [
    "available_provider_types",
    "get_helper_class",
    "known_provider_types",
    "register_provider_type",
]

#: Provider type -> ``{"class": dotted path of the helper, "err": install hint}``.
known_provider_types: dict[str, dict[str, str]] = {
    "S3Config": {
        "class": "ensign.artifacts.s3.S3ArtifactHelper",
        "err": "S3 artifacts need s3fs: pip install 'ensign[s3]'",
    },
    "LocalConfig": {"class": "ensign.artifacts.local.LocalArtifactHelper"},
    "FsspecConfig": {
        "class": "ensign.artifacts.generic.FsspecArtifactHelper",
        "err": "install the fsspec package of the store (e.g. pip install 'ensign[gcs]')",
    },
}

_registry: dict[str, type[ArtifactHelper]] = {}


def register_provider_type(
    type_id: str,
    cls: type[ArtifactHelper] | str,
    *,
    clobber: bool = False,
    errtxt: str | None = None,
) -> None:
    """Add (or replace, with ``clobber``) the helper of a provider type.

    Args:
        type_id: The type providers advertise, e.g. ``S3Config``.
        cls: The helper class, or its dotted path to import on first use.
        clobber: Replace an existing registration.
        errtxt: The install hint shown when the dotted path cannot be imported.

    Raises:
        ValueError: ``type_id`` is taken and ``clobber`` is false.
    """
    if isinstance(cls, str):
        entry = known_provider_types.get(type_id)
        if entry is not None and entry["class"] != cls and not clobber:
            raise ValueError(f"provider type {type_id!r} is already registered to {entry['class']}")
        known_provider_types[type_id] = {"class": cls, "err": errtxt or f"cannot import {cls}"}
        _registry.pop(type_id, None)
        return
    if type_id in _registry and _registry[type_id] is not cls and not clobber:
        raise ValueError(f"provider type {type_id!r} is already registered to {_registry[type_id]}")
    _registry[type_id] = cls


def available_provider_types() -> list[str]:
    """Return every provider type a helper is known for (imported or not)."""
    return sorted(set(known_provider_types) | set(_registry))


def get_helper_class(type_id: str) -> type[ArtifactHelper]:
    """Return the helper class of a provider type, importing it on first use.

    Raises:
        UnsupportedArtifactsType: no helper is known for ``type_id``, or its package is
            missing (the message says what to install).
    """
    if type_id in _registry:
        return _registry[type_id]
    entry = known_provider_types.get(type_id)
    if entry is None:
        raise UnsupportedArtifactsType(
            type_id, f"known types: {', '.join(available_provider_types())}"
        )
    try:
        cls = _import_class(entry["class"])
    except ImportError as exc:
        hint = entry.get("err") or f"cannot import {entry['class']}"
        raise UnsupportedArtifactsType(type_id, f"{hint} ({exc})") from exc
    _registry[type_id] = cls
    return cls


def _import_class(path: str) -> type[ArtifactHelper]:
    module_name, _, class_name = path.replace(":", ".").rpartition(".")
    module = importlib.import_module(module_name)
    cls: type[ArtifactHelper] = getattr(module, class_name)
    return cls
