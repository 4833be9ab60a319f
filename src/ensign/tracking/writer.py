"""The background writer: log calls append to buffers; a thread writes them in batches."""

from __future__ import annotations

import collections
import operator
import threading
import uuid
from collections.abc import Callable
from itertools import groupby
from typing import Any

from ensign.errors import ServerUnavailable
from ensign.records import ArtifactRef
from ensign.registry import Registry, RunBatch
from ensign.registry.base import MetricRow

__all__ = ["BackgroundWriter", "PendingMetric"]

#: ``(key, step or None, value, timestamp)`` as the caller logged it.
PendingMetric = tuple[str, "int | None", float, float]

_key_of = operator.itemgetter(0)
_step_of = operator.itemgetter(1)
#: Marks the end of one drain in the metrics deque (compares unequal to every point).
_END = object()


class BackgroundWriter:
    """Buffers a run's log calls and writes them in batches from a daemon thread.

    ``metrics`` is a deque the caller appends to directly (a thread-safe, lock-free
    operation in CPython), which keeps ``log_metrics`` in the microsecond range. Other
    writes go through small locked buffers. A failed batch is kept and retried at the next
    flush, so nothing is lost while the database is briefly unavailable; ``flush`` raises
    what is still failing.

    Args:
        registry: Where batches go.
        run_uuid: The run the batches belong to.
        next_steps: For each metric, the step a step-less point gets next (for resume).
        interval: Seconds between background flushes.
        spool: Where a batch goes when the registry's server cannot be reached (remote
            tracking); without it such a batch is kept and retried like any failure. Once
            one batch went there, every later one follows it, so that a sync replays them
            in the order they were logged (a later value of a param wins, as it should).
    """

    def __init__(
        self,
        registry: Registry,
        run_uuid: str,
        *,
        next_steps: dict[str, int] | None = None,
        interval: float = 0.25,
        spool: Callable[[RunBatch], None] | None = None,
    ) -> None:
        self.registry = registry
        self._spool = spool
        self._spooling = False
        self.run_uuid = run_uuid
        self.metrics: collections.deque[PendingMetric] = collections.deque()
        self._next_step = dict(next_steps or {})
        self._interval = interval
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending = RunBatch(run_uuid)
        self._failed: list[RunBatch] = []
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"ensign-writer-{run_uuid[:8]}", daemon=True
        )
        self._thread.start()

    # buffers ------------------------------------------------------------------------------

    def add_params(self, params: dict[str, Any]) -> None:
        """Queue parameters (a later value of a key replaces an earlier one)."""
        with self._lock:
            self._pending.params.update(params)

    def add_outputs(self, outputs: dict[str, Any]) -> None:
        """Queue outputs."""
        with self._lock:
            self._pending.outputs.update(outputs)

    def add_environment(self, environment: dict[str, Any]) -> None:
        """Queue environment facts."""
        with self._lock:
            self._pending.environment.update(environment)

    def add_tags(self, tags: list[str]) -> None:
        """Queue tags."""
        with self._lock:
            self._pending.tags.extend(tags)

    def add_ref(self, ref: ArtifactRef) -> None:
        """Queue a lineage ref (called by uploads when their bytes are stored)."""
        with self._lock:
            self._pending.refs.append(ref)

    # writing ------------------------------------------------------------------------------

    def _drain(self) -> RunBatch:
        with self._lock:
            batch, self._pending = self._pending, RunBatch(self.run_uuid)
        # A batch kept after a failure is sent again under the same key: written once.
        batch.key = uuid.uuid4().hex
        metrics = self.metrics
        # Take everything queued so far in one C-level loop: popleft until the marker.
        metrics.append(_END)  # type: ignore[arg-type]
        points: list[PendingMetric] = list(iter(metrics.popleft, _END))
        if points:
            batch.metrics = self._number(points)
        return batch

    def _number(self, points: list[PendingMetric]) -> list[MetricRow]:
        """Group points by metric; number step-less ones; remember each metric's next step.

        Grouping (a stable sort: each metric keeps its logging order) puts a metric's rows
        side by side, which the database's ``(run, key, step)`` index inserts much faster.
        When every point has a step, which is the case of a training loop, no Python code
        runs per point: the sort, the grouping and ``max`` all loop in C.
        """
        points.sort(key=_key_of)
        next_step = self._next_step
        try:
            highest = {key: max(map(_step_of, group)) for key, group in groupby(points, _key_of)}
            if None in highest.values():  # a lone step-less point
                raise TypeError
        except TypeError:  # a step is None: number the points one by one
            rows: list[MetricRow] = []
            append = rows.append
            for key, step, value, ts in points:
                if step is None:
                    step = next_step.get(key, 0)
                if step >= next_step.get(key, 0):
                    next_step[key] = step + 1
                append((key, step, value, ts))
            return rows
        for key, step in highest.items():
            if step >= next_step.get(key, 0):
                next_step[key] = step + 1
        return points  # type: ignore[return-value]  # every step is an int here

    def flush(self) -> None:
        """Write everything queued so far; raise what still fails to be written."""
        with self._write_lock:
            batch = self._drain()
            todo = [*self._failed, batch] if batch else list(self._failed)
            self._failed = []
            for index, item in enumerate(todo):
                try:
                    self._write(item)
                except Exception as exc:
                    self._failed = todo[index:]
                    self._error = exc
                    raise
            self._error = None

    @property
    def spooling(self) -> bool:
        """Whether batches go to the spool now (they do from the first that had to)."""
        return self._spooling

    def spool_from_now(self) -> None:
        """Send every batch from now on to the spool (the run's server went away)."""
        if self._spool is None:
            raise ServerUnavailable(f"run {self.run_uuid} has no spool to fall back on")
        self._spooling = True

    def _write(self, batch: RunBatch) -> None:
        if self._spooling and self._spool is not None:
            self._spool(batch)
            return
        try:
            self.registry.write_batch(batch)
        except ServerUnavailable:
            if self._spool is None:
                raise
            self._spooling = True
            self._spool(batch)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception:  # kept in self._failed / self._error; raised by close()
                continue

    @property
    def error(self) -> BaseException | None:
        """The failure of the last write attempt, if data is still waiting."""
        return self._error

    def close(self) -> None:
        """Stop the thread and write what is left; raise if it cannot be written."""
        self._stop.set()
        self._thread.join()
        self.flush()
