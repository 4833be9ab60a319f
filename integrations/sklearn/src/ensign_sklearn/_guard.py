"""A process-wide count of fits being logged, so nested fits are not logged again.

A meta-estimator (``GridSearchCV``, ``Pipeline``, ...) fits other estimators inside its own
``fit``, on this thread or on joblib's worker threads. While any logged fit runs, other
fits are not logged separately: only the outermost fit is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["busy", "logging_fit"]

_lock = threading.Lock()
_depth = 0


def busy() -> bool:
    """Whether a logged fit is running in this process."""
    return _depth > 0


@contextmanager
def logging_fit() -> Iterator[None]:
    """Mark a logged fit as running for the duration of the block."""
    global _depth
    with _lock:
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
