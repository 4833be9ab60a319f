"""JSON encoding used for stored values: tolerant of numpy scalars, paths and NaN."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

__all__ = ["dumps", "from_epoch", "loads", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON types (numpy scalars become numbers, paths strings)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return to_jsonable(item())
        except (TypeError, ValueError):
            pass
    return str(value)


def dumps(value: Any) -> str:
    """Serialise ``value`` compactly with sorted keys."""
    return json.dumps(to_jsonable(value), separators=(",", ":"), sort_keys=True)


def loads(text: str | None) -> Any:
    """Parse JSON text written by :func:`dumps`; ``None`` stays ``None``."""
    return None if text is None else json.loads(text)


def from_epoch(seconds: float | None) -> datetime | None:
    """Return a UTC datetime for seconds since the epoch (``None`` stays ``None``)."""
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)
