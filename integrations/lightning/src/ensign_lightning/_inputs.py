"""What a fit consumes: flattened hyperparameters and the data refs a module exposes."""

from __future__ import annotations

import dataclasses
import inspect
from argparse import Namespace
from collections.abc import Iterable, Mapping
from typing import Any

from ensign.errors import ConfigurationError

__all__ = ["DATA_REFS_HOOK", "collect_data_refs", "flatten_hyperparams"]

#: The method (or attribute) of a ``LightningDataModule`` or ``LightningModule`` whose
#: items are logged as the run's input data refs; see :func:`collect_data_refs`.
DATA_REFS_HOOK = "ensign_data_refs"

_DATA_REF_KEYS = frozenset({"name", "hash", "path", "content", "summary", "is_input"})


def _as_mapping(value: Any) -> Mapping[Any, Any] | None:
    if isinstance(value, Namespace):
        return vars(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return value
    return None


def _plain(value: Any) -> Any:
    """Return ``value`` as something a parameter can hold (classes and callables by name)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if inspect.isclass(value) or inspect.isroutine(value):
        return f"{value.__module__}.{value.__qualname__}"
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return item()  # numpy scalars and 0-d tensors
    if isinstance(value, (list, tuple)) and all(
        v is None or isinstance(v, (bool, int, float, str)) for v in value
    ):
        return list(value)
    return str(value)


def flatten_hyperparams(params: Any, delimiter: str = "/") -> dict[str, Any]:
    """Flatten hyperparameters into ``{"optimizer/lr": 0.01, ...}``.

    Nested dicts, :class:`argparse.Namespace` and dataclass instances are walked;
    values that are not plain numbers, strings or lists of them are stored as text
    (classes and functions by their qualified name).

    Args:
        params: A dict, a ``Namespace``, a dataclass instance, or ``None``.
        delimiter: What joins the keys of nested levels.

    Raises:
        ConfigurationError: when ``params`` is none of those.
    """
    if params is None:
        return {}
    top = _as_mapping(params)
    if top is None:
        raise ConfigurationError(
            "hyperparameters must be a dict, an argparse.Namespace or a dataclass instance, "
            f"not {type(params).__name__}"
        )
    flat: dict[str, Any] = {}

    def walk(mapping: Mapping[Any, Any], prefix: str) -> None:
        for key, value in mapping.items():
            name = f"{prefix}{delimiter}{key}" if prefix else str(key)
            nested = _as_mapping(value)
            if nested is not None and nested:
                walk(nested, name)
            else:
                flat[name] = _plain(value) if nested is None else {}

    walk(top, "")
    return flat


def collect_data_refs(*owners: object) -> list[dict[str, Any]]:
    """Return the data refs that a data module or module exposes through ``ensign_data_refs``.

    The hook is a method returning an iterable of dicts (or an attribute holding one). Each
    dict holds the arguments of :meth:`ensign.tracking.run.Run.log_data_ref`: ``name``
    (required), and any of ``hash``, ``path``, ``content``, ``summary``, ``is_input``
    (inputs by default). For example::

        class DigitsData(L.LightningDataModule):
            def ensign_data_refs(self):
                return [{"name": "digits", "content": self.x.tobytes(),
                         "summary": {"rows": len(self.x)}}]

    It is called at the start of each fit, after ``setup()``, so it may describe the data
    that ``setup()`` loaded.

    Raises:
        ConfigurationError: for an item that is not such a dict.
    """
    found: list[dict[str, Any]] = []
    for owner in owners:
        if owner is None:
            continue
        hook = getattr(owner, DATA_REFS_HOOK, None)
        if hook is None:
            continue
        items = hook() if callable(hook) else hook
        where = f"{type(owner).__name__}.{DATA_REFS_HOOK}"
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            raise ConfigurationError(
                f"{where} must give an iterable of dicts, not {type(items).__name__}"
            )
        for item in items:
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise ConfigurationError(
                    f"{where} gave {item!r}: each data ref is a dict with a 'name' string"
                )
            unknown = sorted(set(item) - _DATA_REF_KEYS)
            if unknown:
                raise ConfigurationError(
                    f"{where} gave unknown keys {unknown} for data ref {item['name']!r}; "
                    f"use {sorted(_DATA_REF_KEYS)}"
                )
            found.append(dict(item))
    return found
