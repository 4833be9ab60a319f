"""Evaluation workers: threads that take jobs from the store's queue and run them.

``ensign server`` runs ``settings.workers`` of them in-process; ``ensign worker`` runs more
on any host against the same database and store (:func:`open_worker_context`).  Each
worker polls the queue (:mod:`ensign.registry.sql.jobs`), and while it runs a job a
heartbeat thread renews the job's lease, so only a worker that died (or hangs past its
lease) loses its job to another.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from ensign.errors import NotFound
from ensign.records import RunStatus
from ensign.registry.sql import jobs as job_ops
from ensign.registry.sql import pushes as push_ops
from ensign.registry.sql import runs as run_ops
from ensign.registry.sql.engine import write_transaction
from ensign.server.evaluation import WorkerContext, run_push_job
from ensign.server.settings import ServerSettings
from ensign.server.state import ServerState, open_store

__all__ = [
    "POLL_SECONDS",
    "Worker",
    "WorkerPool",
    "open_worker_context",
    "start_pool",
    "start_workers",
]

#: How often an idle worker looks for a job.
POLL_SECONDS = 0.25

_log = logging.getLogger("ensign.worker")


def worker_name() -> str:
    """Return a name unique to one worker: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """One worker thread: claim a job, run it with a heartbeat, repeat until stopped.

    Args:
        context: The store and settings.
        stopping: Set to stop the worker (after its current job).
    """

    def __init__(self, context: WorkerContext, stopping: threading.Event) -> None:
        self.context = context
        self.name = worker_name()
        self._stopping = stopping
        self._thread = threading.Thread(target=self._loop, name=f"ensign-worker-{self.name}")
        self._thread.daemon = True

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end."""
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                ran = self.run_once()
            except Exception:  # the database went away, say: log it and keep polling
                _log.exception("worker %s: could not take a job", self.name)
                ran = False
            if not ran:
                self._stopping.wait(POLL_SECONDS)

    def run_once(self) -> bool:
        """Claim and run one job; return whether there was one."""
        lease = self.context.settings.job_lease_seconds
        engine = self.context.registry.engine
        job = job_ops.claim(engine, self.name, lease, kinds=(push_ops.PUSH_JOB,))
        if job is None:
            return False
        beating = threading.Event()
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(job, beating), name=f"ensign-heartbeat-{job.id[:8]}"
        )
        heartbeat.daemon = True
        heartbeat.start()
        try:
            run_push_job(self.context, job)
        except Exception as error:
            _log.exception("worker %s: job %s failed", self.name, job.id)
            self._record_failure(job, error)
        finally:
            beating.set()
            heartbeat.join()
        return True

    def _heartbeat(self, job: job_ops.Job, done: threading.Event) -> None:
        lease = self.context.settings.job_lease_seconds
        interval = max(lease / 3.0, 0.05)
        while not done.wait(interval):
            try:
                if not job_ops.renew(self.context.registry.engine, job, lease):
                    _log.warning("worker %s lost job %s to another worker", self.name, job.id)
                    return
            except Exception:
                _log.exception("worker %s: could not renew the lease of %s", self.name, job.id)

    def _record_failure(self, job: job_ops.Job, error: Exception) -> None:
        message = f"the evaluation failed unexpectedly: {type(error).__name__}: {error}"
        try:
            with write_transaction(self.context.registry.engine) as conn:
                if not job_ops.holds(conn, job):
                    return
                try:
                    push = push_ops.get_push(conn, str(job.payload.get("push")))
                except NotFound:
                    push = None  # nothing to report on: only the job fails
                if push is not None:
                    push_ops.finish_push(
                        conn,
                        push.id,
                        status="failed",
                        status_message=message,
                        passing=0,
                        failing=0,
                        total=0,
                        results=[],
                        run_uuid=push.run_uuid,
                        version_name=None,
                    )
                    if push.run_uuid is not None:
                        run_ops.set_run_status(conn, push.run_uuid, RunStatus.FAILED.value, True)
                job_ops.fail(conn, job, message)
        except Exception:
            _log.exception("worker %s: could not record the failure of %s", self.name, job.id)


class WorkerPool:
    """Workers running in this process.

    Args:
        workers: The started workers.
        stopping: The event that stops them.
    """

    def __init__(self, workers: list[Worker], stopping: threading.Event) -> None:
        self.workers = workers
        self._stopping = stopping

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every worker.

        A job still running is left to its lease: another worker takes it over once the
        lease passes.
        """
        self._stopping.set()
        for worker in self.workers:
            worker.join(timeout)

    def wait(self) -> None:
        """Block until the pool is stopped (``ensign worker``)."""
        while not self._stopping.wait(1.0):
            pass


def start_pool(context: WorkerContext, count: int) -> WorkerPool:
    """Start ``count`` workers on ``context``."""
    stopping = threading.Event()
    workers = [Worker(context, stopping) for _ in range(count)]
    for worker in workers:
        worker.start()
    return WorkerPool(workers, stopping)


def start_workers(state: ServerState) -> WorkerPool:
    """Start the in-process workers ``state.settings.workers`` asks for."""
    context = WorkerContext(state.settings, state.backend, state.registry)
    return start_pool(context, state.settings.workers)


def open_worker_context(settings: ServerSettings) -> WorkerContext:
    """Open the store a worker works on: like a server, but without tokens or signing.

    Raises:
        ConfigurationError: a server URI as tracking URI, or a schema that is behind.
    """
    backend, registry = open_store(settings, "ensign worker")
    return WorkerContext(settings, backend, registry)
