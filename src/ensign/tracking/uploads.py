"""A bounded pool for uploads and other slow work of a run, which collects failures."""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["UploadPool"]


def _default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


class UploadPool:
    """Runs jobs on at most ``max_workers`` threads and remembers every failure.

    Args:
        max_workers: Threads; defaults to the core count, between 2 and 8.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers or _default_workers(), thread_name_prefix="ensign-upload"
        )
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._errors: list[BaseException] = []

    def submit(self, job: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``job`` in the background."""
        future = self._executor.submit(job)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)
            error = future.exception() if not future.cancelled() else None
            if error is not None:
                self._errors.append(error)

    def wait(self) -> list[BaseException]:
        """Wait for every job submitted so far; return and forget the failures."""
        with self._lock:
            pending = list(self._pending)
        concurrent.futures.wait(pending)
        with self._lock:
            errors, self._errors = self._errors, []
        return errors

    def shutdown(self) -> None:
        """Wait for the jobs and stop the threads."""
        self._executor.shutdown(wait=True)
