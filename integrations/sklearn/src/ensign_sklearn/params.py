"""Estimator parameters as plain JSON values."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

__all__ = ["estimator_params", "json_safe", "qualified_name"]

#: Arrays with more elements than this are described, not listed.
MAX_ARRAY_ITEMS = 100
#: Longer reprs are cut to this many characters.
MAX_REPR = 1000
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def qualified_name(obj: Any) -> str:
    """Return ``module.QualName`` of a class, function or an object's class."""
    target = obj if hasattr(obj, "__qualname__") else type(obj)
    module = getattr(target, "__module__", None)
    name = str(target.__qualname__)
    return f"{module}.{name}" if module and module != "builtins" else name


def _float(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _frozen_distribution(value: Any) -> str | None:
    dist = getattr(value, "dist", None)
    if dist is None or not hasattr(value, "rvs") or not hasattr(value, "args"):
        return None
    args = [json_safe(a) for a in value.args]
    kwds = {str(k): json_safe(v) for k, v in getattr(value, "kwds", {}).items()}
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in sorted(kwds.items())]
    return f"{getattr(dist, 'name', type(dist).__name__)}({', '.join(parts)})"


def json_safe(value: Any) -> Any:
    """Return ``value`` as plain JSON types, the same text for the same value in every run.

    Estimators become their class name (their own parameters are logged separately),
    functions and classes their qualified name, numpy scalars numbers, small arrays lists,
    NaN and infinities strings, frozen scipy distributions ``name(args)``; anything else its
    ``repr`` with memory addresses removed.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _float(float(value))
    if isinstance(value, BaseEstimator):
        return type(value).__name__
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((json_safe(v) for v in value), key=repr)
    if isinstance(value, np.ma.MaskedArray):
        pairs = zip(value.data.tolist(), np.ma.getmaskarray(value).tolist(), strict=True)
        return [None if masked else json_safe(v) for v, masked in pairs]
    if isinstance(value, np.ndarray):
        if value.size <= MAX_ARRAY_ITEMS:
            return json_safe(value.tolist())
        return f"ndarray(shape={tuple(value.shape)}, dtype={value.dtype})"
    if isinstance(value, np.dtype):
        return str(value)
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return qualified_name(value)
    described = _frozen_distribution(value)
    if described is not None:
        return described
    text = _ADDRESS.sub("", repr(value))
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def estimator_params(estimator: BaseEstimator) -> dict[str, Any]:
    """Return ``estimator.get_params(deep=True)`` with JSON-safe values.

    The keys are sklearn's flat ``step__param`` names; nested estimators appear as their
    class name, their own parameters under their prefixed keys.
    """
    params: dict[str, Any] = estimator.get_params(deep=True)
    return {str(key): json_safe(value) for key, value in sorted(params.items())}
