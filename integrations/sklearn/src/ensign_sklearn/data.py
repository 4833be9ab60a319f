"""Content digests of training and evaluation data: the same data gives the same digest.

A digest is a sha256 over a canonical encoding of the data, independent of the process,
the machine's memory layout and the run:

* numpy arrays: dtype, shape and the bytes in C order (an object array: its values as JSON);
* pandas DataFrames: column names, dtypes, the index and each column's values;
  a Series: its name, dtype, index and values;
* scipy sparse matrices: format-independent (canonical CSR: data, indices, indptr);
* lists and tuples: as the numpy array they make; anything else: its JSON form.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ensign import jsonio

__all__ = ["data_digest", "data_summary", "dataset_digest"]

_MAX_COLUMNS = 100
_Update = Callable[[Any], None]


def _part(update: _Update, data: bytes) -> None:
    update(f"{len(data)}:".encode())
    update(data)


def _buffer(update: _Update, array: np.ndarray[Any, Any]) -> None:
    """Feed an array's bytes in C order, without copying a C-contiguous array."""
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    update(f"{flat.nbytes}:".encode())
    update(flat)


def _text(update: _Update, text: str) -> None:
    _part(update, text.encode())


def _is_pandas(value: Any, name: str) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, getattr(pandas, name))


def _is_sparse(value: Any) -> bool:
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and bool(sparse.issparse(value))


def _feed_array(update: _Update, array: np.ndarray[Any, Any]) -> None:
    if array.dtype.hasobject:
        _text(update, f"ndarray-object|{array.shape}")
        _text(update, json.dumps(jsonio.to_jsonable(array.tolist()), sort_keys=True))
        return
    _text(update, f"ndarray|{array.dtype.str}|{array.shape}")
    _buffer(update, array)


def _feed_values(update: _Update, values: Any) -> None:
    array = np.asarray(values)
    _feed_array(update, array)


def _feed_series(update: _Update, series: Any) -> None:
    _text(update, f"series|{jsonio.dumps(series.name)}|{series.dtype}")
    _feed_values(update, series.index.to_numpy())
    _feed_values(update, series.to_numpy())


def _feed_frame(update: _Update, frame: Any) -> None:
    columns = [jsonio.to_jsonable(c) for c in frame.columns]
    dtypes = [str(t) for t in frame.dtypes]
    _text(update, f"dataframe|{json.dumps(columns)}|{json.dumps(dtypes)}|{frame.shape}")
    _feed_values(update, frame.index.to_numpy())
    for position in range(frame.shape[1]):
        _feed_values(update, frame.iloc[:, position].to_numpy())


def _feed_sparse(update: _Update, matrix: Any) -> None:
    csr = matrix.tocsr(copy=True)
    csr.sum_duplicates()
    csr.sort_indices()
    _text(update, f"sparse-csr|{csr.dtype.str}|{csr.shape}")
    _buffer(update, csr.data)
    _buffer(update, csr.indices.astype(np.int64))
    _buffer(update, csr.indptr.astype(np.int64))


def _feed(update: _Update, data: Any) -> None:
    if data is None:
        _text(update, "none")
    elif _is_pandas(data, "DataFrame"):
        _feed_frame(update, data)
    elif _is_pandas(data, "Series"):
        _feed_series(update, data)
    elif isinstance(data, np.ndarray):
        _feed_array(update, data)
    elif _is_sparse(data):
        _feed_sparse(update, data)
    elif isinstance(data, (list, tuple)):
        try:
            array = np.asarray(data)
        except ValueError:  # ragged nesting
            _text(update, "json|" + jsonio.dumps(data))
        else:
            _feed_array(update, array)
    else:
        _text(update, "json|" + jsonio.dumps(data))


def data_digest(data: Any) -> str:
    """Return the sha256 of an array, DataFrame, Series, sparse matrix or list.

    Equal data gives equal digests in every process; any change to the values, the dtype,
    the shape, or (for pandas) the column names or the index changes it. A Fortran-ordered
    array and its C-ordered copy have the same digest.

    Args:
        data: Features or targets, as scikit-learn accepts them.

    Returns:
        64 hex characters.
    """
    digest = hashlib.sha256()
    _feed(digest.update, data)
    return digest.hexdigest()


def dataset_digest(x_digest: str, y_digest: str | None) -> str:
    """Return the digest of a data set from the digests of its features and targets."""
    return hashlib.sha256(f"X={x_digest};y={y_digest or ''}".encode()).hexdigest()


def data_summary(x: Any, y: Any, x_digest: str, y_digest: str | None) -> dict[str, Any]:
    """Describe a data set for a data ref: its shape, type, columns and part digests."""
    found = getattr(x, "shape", None)
    if found is None:
        found = np.shape(x) if isinstance(x, (list, tuple)) else ()
    shape: tuple[int, ...] = tuple(found)
    summary: dict[str, Any] = {
        "type": f"{type(x).__module__.split('.')[0]}.{type(x).__name__}",
        "rows": int(shape[0]) if len(shape) else None,
        "features": int(shape[1]) if len(shape) > 1 else None,
        "X_digest": x_digest,
    }
    if _is_pandas(x, "DataFrame"):
        columns = [str(c) for c in x.columns]
        summary["columns"] = columns[:_MAX_COLUMNS]
    if y is not None:
        summary["y_digest"] = y_digest
        name = getattr(y, "name", None)
        if name is not None:
            summary["target"] = str(name)
    return summary
