"""Track a run from a script: ``tracking.init()``, ``log_*``, ``promote_*``, ``end()``.

The module keeps one active run, as the reference API does::

    from ensign import tracking

    with tracking.init(project="digits"):
        tracking.log_params(lr=0.01)
        tracking.log_metrics(step=1, loss=0.3, acc=0.9)
        tracking.log_model_ref("model.joblib")
        tracking.promote_to_model_version(when="acc >= 0.9")

A run left open when the interpreter exits is ended by an ``atexit`` hook: ``failed``
when an uncaught exception ended the program, ``stopped`` on ``KeyboardInterrupt``,
``succeeded`` otherwise.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from ensign.backend import Backend, open_backend
from ensign.config import resolve_project
from ensign.errors import RunEnded, ServerUnavailable
from ensign.names import check_project_key
from ensign.promotion.spec import Mode
from ensign.records import ArtifactVersion, PromotionDecision, RunStatus
from ensign.tracking.run import Run
from ensign.tracking.spool import Spool, announce

__all__ = [
    "Run",
    "end",
    "evaluate_promotion",
    "get_run",
    "init",
    "log_artifact_ref",
    "log_code_ref",
    "log_data_ref",
    "log_dir_ref",
    "log_env",
    "log_file_ref",
    "log_inputs",
    "log_metric",
    "log_metrics",
    "log_model_ref",
    "log_outputs",
    "log_params",
    "log_tags",
    "promote_to_artifact_version",
    "promote_to_model_version",
]


class _Session:
    """The active run of this process and the hooks that close it at exit."""

    def __init__(self) -> None:
        self.run: Run | None = None
        self.lock = threading.Lock()
        self.hooks_installed = False
        self.exit_status: RunStatus | None = None

    def install_hooks(self) -> None:
        if self.hooks_installed:
            return
        self.hooks_installed = True
        atexit.register(self.close_at_exit)
        previous = sys.excepthook

        def excepthook(
            exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
        ) -> None:
            self.exit_status = (
                RunStatus.STOPPED if issubclass(exc_type, KeyboardInterrupt) else RunStatus.FAILED
            )
            self.close_at_exit()
            previous(exc_type, exc, tb)

        sys.excepthook = excepthook

    def close_at_exit(self) -> None:
        run = self.run
        if run is None or run.ended:
            return
        try:
            run.end(self.exit_status or RunStatus.SUCCEEDED)
        except Exception as exc:  # at exit there is no caller left to raise to
            print(f"ensign: run {run.uuid} ended with errors: {exc}", file=sys.stderr)


_session = _Session()


def init(
    project: str | None = None,
    name: str | None = None,
    description: str | None = None,
    tags: Sequence[str] | None = None,
    tracking_uri: str | os.PathLike[str] | None = None,
    artifacts_uri: str | os.PathLike[str] | None = None,
) -> Run:
    """Start a run and make it the active one (a run still active is ended first).

    Args:
        project: ``owner/name`` or ``name``; else ``ENSIGN_PROJECT``, else ``default``.
        name: The run's name.
        description: Free text.
        tags: Tags.
        tracking_uri: Where metadata goes; else ``ENSIGN_TRACKING_URI``, else ``./.ensign``.
        artifacts_uri: Where bytes go; else ``ENSIGN_ARTIFACTS_URI``, else the store's own.

    Returns:
        The run; also a context manager.

    Raises:
        InvalidName: for a bad project key.
        ConfigurationError: for an unusable URI.
        StoreNotAvailable: when the artifacts URI's protocol is not installed.
    """
    key = check_project_key(resolve_project(project))
    backend = open_backend(tracking_uri, artifacts_uri)
    if backend.location.is_remote:
        _send_spooled(backend)
    try:
        run = Run(backend, key, name=name, description=description, tags=tags)
    except BaseException:
        backend.close()
        raise
    with _session.lock:
        previous, _session.run = _session.run, run
        _session.exit_status = None
        _session.install_hooks()
    if previous is not None and not previous.ended:
        previous.end()
    return run


def _send_spooled(backend: Backend) -> None:
    """Send what earlier runs spooled for this server, if it can be reached now."""
    spool = Spool(backend.location.uri)
    try:
        if not spool.pending():
            return
        report = spool.sync(backend)
    except ServerUnavailable:
        return  # still away: the new run will say so itself
    except OSError as error:  # the spool's folder: the new run must start all the same
        announce(f"the offline spool {spool.folder} could not be sent: {error}")
        return
    finally:
        spool.close()
    if report.runs:
        announce(f"sent {len(report.runs)} spooled runs to {backend.location.uri}")
    for run_uuid, why in report.failed:
        announce(f"spooled run {run_uuid} was not sent, it stays spooled: {why}")


def get_run() -> Run | None:
    """Return the active run, if any."""
    return _session.run


def _active() -> Run:
    run = _session.run
    if run is None:
        raise RunEnded("no active run: call tracking.init() first")
    return run


def log_params(**params: Any) -> None:
    """Log parameters of the active run (see :meth:`Run.log_params`)."""
    _active().log_params(**params)


log_inputs = log_params


def log_outputs(**outputs: Any) -> None:
    """Log outputs of the active run (see :meth:`Run.log_outputs`)."""
    _active().log_outputs(**outputs)


def log_tags(*tags: str | Sequence[str]) -> None:
    """Add tags to the active run."""
    _active().log_tags(*tags)


def log_metric(
    name: str, value: float, step: int | None = None, timestamp: float | None = None
) -> None:
    """Log one metric value on the active run (see :meth:`Run.log_metric`)."""
    _active().log_metric(name, value, step=step, timestamp=timestamp)


def log_metrics(step: int | None = None, timestamp: float | None = None, **metrics: float) -> None:
    """Log several metrics on the active run (see :meth:`Run.log_metrics`)."""
    run = _session.run or _active()  # the hot path: one call below, no kwargs re-packing
    run._log_metrics(step, timestamp, metrics)


def log_artifact_ref(
    path: str | os.PathLike[str],
    kind: str | None = None,
    name: str | None = None,
    hash: str | None = None,
    summary: dict[str, Any] | None = None,
    is_input: bool = False,
    rel_path: str | None = None,
    skip_hash_calculation: bool = False,
    upload: bool = True,
) -> None:
    """Log a lineage ref on the active run (see :meth:`Run.log_artifact_ref`)."""
    _active().log_artifact_ref(
        path,
        kind=kind,
        name=name,
        hash=hash,
        summary=summary,
        is_input=is_input,
        rel_path=rel_path,
        skip_hash_calculation=skip_hash_calculation,
        upload=upload,
    )


def log_model_ref(
    path: str | os.PathLike[str],
    name: str | None = None,
    framework: str | None = None,
    summary: dict[str, Any] | None = None,
    is_input: bool = False,
) -> None:
    """Log a model on the active run (see :meth:`Run.log_model_ref`)."""
    _active().log_model_ref(
        path, name=name, framework=framework, summary=summary, is_input=is_input
    )


def log_data_ref(
    name: str,
    hash: str | None = None,
    path: str | os.PathLike[str] | None = None,
    content: Any = None,
    summary: dict[str, Any] | None = None,
    is_input: bool = True,
) -> None:
    """Log a data set on the active run (see :meth:`Run.log_data_ref`)."""
    _active().log_data_ref(
        name, hash=hash, path=path, content=content, summary=summary, is_input=is_input
    )


def log_file_ref(
    path: str | os.PathLike[str],
    name: str | None = None,
    hash: str | None = None,
    summary: dict[str, Any] | None = None,
    is_input: bool = False,
    rel_path: str | None = None,
) -> None:
    """Log a file on the active run (see :meth:`Run.log_file_ref`)."""
    _active().log_file_ref(
        path, name=name, hash=hash, summary=summary, is_input=is_input, rel_path=rel_path
    )


def log_dir_ref(
    path: str | os.PathLike[str],
    name: str | None = None,
    summary: dict[str, Any] | None = None,
    is_input: bool = False,
) -> None:
    """Log a folder on the active run (see :meth:`Run.log_dir_ref`)."""
    _active().log_dir_ref(path, name=name, summary=summary, is_input=is_input)


def log_code_ref(path: str | os.PathLike[str] | None = None) -> None:
    """Log the git state of the code on the active run."""
    _active().log_code_ref(path)


def log_env() -> None:
    """Log the environment on the active run."""
    _active().log_env()


def evaluate_promotion(
    when: str | None = None,
    better_than: str | None = None,
    metric: str | None = None,
    mode: Mode = "max",
    min_delta: float = 0.0,
    kind: str = "artifact",
) -> PromotionDecision:
    """Dry-run a promotion of the active run (see :meth:`Run.evaluate_promotion`)."""
    return _active().evaluate_promotion(
        when=when,
        better_than=better_than,
        metric=metric,
        mode=mode,
        min_delta=min_delta,
        kind=kind,
    )


def promote_to_artifact_version(
    version: str | None = None,
    description: str | None = None,
    tags: Sequence[str] | None = None,
    content: dict[str, Any] | None = None,
    artifacts: Sequence[str] | None = None,
    force: bool = False,
    when: str | None = None,
    better_than: str | None = None,
    metric: str | None = None,
    mode: Mode = "max",
    min_delta: float = 0.0,
    stage: str | None = None,
) -> ArtifactVersion | None:
    """Promote the active run (see :meth:`Run.promote_to_artifact_version`)."""
    return _active().promote_to_artifact_version(
        version=version,
        description=description,
        tags=tags,
        content=content,
        artifacts=artifacts,
        force=force,
        when=when,
        better_than=better_than,
        metric=metric,
        mode=mode,
        min_delta=min_delta,
        stage=stage,
    )


def promote_to_model_version(
    version: str | None = None,
    description: str | None = None,
    tags: Sequence[str] | None = None,
    content: dict[str, Any] | None = None,
    artifacts: Sequence[str] | None = None,
    force: bool = False,
    when: str | None = None,
    better_than: str | None = None,
    metric: str | None = None,
    mode: Mode = "max",
    min_delta: float = 0.0,
    stage: str | None = None,
) -> ArtifactVersion | None:
    """Promote the active run to a model version (see :meth:`Run.promote_to_model_version`)."""
    return _active().promote_to_model_version(
        version=version,
        description=description,
        tags=tags,
        content=content,
        artifacts=artifacts,
        force=force,
        when=when,
        better_than=better_than,
        metric=metric,
        mode=mode,
        min_delta=min_delta,
        stage=stage,
    )


def end(status: str | RunStatus | None = None) -> None:
    """End the active run (see :meth:`Run.end`)."""
    run = _session.run
    if run is not None:
        run.end(status)
