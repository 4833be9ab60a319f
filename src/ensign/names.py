"""Validation of the names users choose: project keys, version names, metric names."""

from __future__ import annotations

import re

from ensign.errors import InvalidMetric, InvalidName

__all__ = ["MAX_NAME_LENGTH", "check_metric_name", "check_project_key", "check_version_name"]

MAX_NAME_LENGTH = 128
_SLUG = re.compile(r"[A-Za-z0-9_.-]+")


def check_project_key(key: str) -> str:
    """Return ``key`` if it is a valid project key (``owner/name`` or ``name``).

    Each part holds letters, digits, ``-``, ``_`` and ``.``; the whole key is at most 128
    characters.

    Raises:
        InvalidName: with the rule that was broken.
    """
    if not isinstance(key, str) or not key:
        raise InvalidName("a project key must be a non-empty string")
    if len(key) > MAX_NAME_LENGTH:
        raise InvalidName(
            f"project key is {len(key)} characters long; at most {MAX_NAME_LENGTH} are allowed"
        )
    parts = key.split("/")
    if len(parts) > 2 or not all(parts) or not all(_SLUG.fullmatch(p) for p in parts):
        raise InvalidName(
            f"invalid project key {key!r}: use 'name' or 'owner/name' with letters, digits, "
            "'-', '_' and '.'"
        )
    if any(p in {".", ".."} for p in parts):
        raise InvalidName(f"invalid project key {key!r}: '.' and '..' are not names")
    return key


def check_version_name(name: str) -> str:
    """Return ``name`` if it is a valid version name (``[A-Za-z0-9._-]``, at most 128).

    Raises:
        InvalidName: with the rule that was broken.
    """
    if not isinstance(name, str) or not name:
        raise InvalidName("a version name must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(
            f"version name is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed"
        )
    if not _SLUG.fullmatch(name) or name in {".", ".."}:
        raise InvalidName(
            f"invalid version name {name!r}: use letters, digits, '.', '_' and '-' only"
        )
    return name


def check_metric_name(name: str) -> str:
    """Return ``name`` if it can name a metric (non-empty, at most 250 characters, printable).

    Raises:
        InvalidMetric: when it cannot.
    """
    if not isinstance(name, str) or not name or len(name) > 250 or not name.isprintable():
        raise InvalidMetric(f"invalid metric name {name!r}")
    return name
