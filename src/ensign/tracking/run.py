"""``Run``: the live object that ``tracking.init()`` returns."""

from __future__ import annotations

import math
import operator
import threading
import time
import uuid as uuidlib
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from ensign.backend import Backend
from ensign.errors import BackgroundError, InvalidMetric, RunEnded, ServerUnavailable
from ensign.names import check_metric_name
from ensign.promotion.decide import decide
from ensign.promotion.register import manifest_of, register_version, select_refs
from ensign.promotion.spec import Mode, Promotion
from ensign.records import (
    ArtifactVersion,
    PromotionDecision,
    RunStatus,
    VersionKind,
    parse_status,
)
from ensign.records import Run as RunRecord
from ensign.registry import RunBatch, VersionSpec
from ensign.tracking.environment import capture_environment
from ensign.tracking.lineage import LineageLogging
from ensign.tracking.spool import Spool, announce
from ensign.tracking.uploads import UploadPool
from ensign.tracking.writer import BackgroundWriter

__all__ = ["Run"]

_now = time.time  # one global lookup on the hot path of log_metrics
_STEP_LIMIT = 2**63  # steps are stored as 64-bit integers


class Run(LineageLogging):
    """A run being tracked: log calls buffer and return at once; ``end()`` waits for them.

    Create one with :func:`ensign.tracking.init`. A run is also a context manager: leaving
    the block ends it, as ``failed`` when the block raised (``stopped`` on
    ``KeyboardInterrupt``).

    With a server as tracking URI, a run that cannot reach it logs to the offline spool
    (see :mod:`ensign.tracking.spool`) and says so once: all of it when the server is
    unreachable at start, else what could not be delivered. ``ensign sync`` sends it.

    Attributes:
        uuid: The run's id (32 hex characters).
        project: The project key.
        name: The run's name.
    """

    def __init__(
        self,
        backend: Backend,
        project: str,
        *,
        name: str | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        capture_env: bool = True,
        owns_backend: bool = True,
    ) -> None:
        run_uuid = uuidlib.uuid4().hex
        offline: Spool | None = None
        try:
            record = backend.registry.create_run(
                project,
                name=name,
                description=description,
                tags=list(tags or []),
                run_uuid=run_uuid,
            )
        except ServerUnavailable as error:
            if not backend.location.is_remote:
                raise
            offline = Spool(backend.location.uri)
            record = offline.start_run(
                project, run_uuid, name=name, description=description, tags=list(tags or [])
            )
            announce(
                f"{error}; run {run_uuid} logs to the offline spool {offline.folder}: "
                "'ensign sync' sends it once the server is back"
            )
            if owns_backend:
                backend.close()
            backend, owns_backend = offline.backend, False
        self._start(backend, record, owns_backend=owns_backend, next_steps=None, offline=offline)
        if capture_env:
            self._pool.submit(lambda: self._writer.add_environment(capture_environment()))

    def _start(
        self,
        backend: Backend,
        record: RunRecord,
        *,
        owns_backend: bool,
        next_steps: dict[str, int] | None,
        offline: Spool | None = None,
    ) -> None:
        """Set up the live state of a run, new (``__init__``) or reopened (``attach``)."""
        self.uuid = record.uuid
        self.project = record.project
        self.name = record.name
        self.backend = backend
        self._owns_backend = owns_backend
        self._ended = False
        self._failed_before = False
        self._end_lock = threading.Lock()
        self._offline = offline
        self._spool: Spool | None = None  # where undeliverable writes of a remote run go
        self._spool_lock = threading.Lock()
        self._record = record
        self._writer = BackgroundWriter(
            backend.registry,
            self.uuid,
            next_steps=next_steps,
            spool=self._spool_batch if backend.location.is_remote else None,
        )
        self._metrics = self._writer.metrics
        self._append_metric = self._metrics.append
        self._metric_names: set[str] = set()  # names already checked by check_metric_name
        # The latest log call of each (name, is_input); an older upload that finishes last
        # must not replace the ref logged after it.
        self._ref_tickets: dict[tuple[str, bool], int] = {}
        self._ticket_lock = threading.Lock()
        self._pool = UploadPool()

    @classmethod
    def attach(cls, backend: Backend, run_uuid: str, *, owns_backend: bool = True) -> Run:
        """Reopen an existing run to log more to it (a resumed training job, say).

        The run is marked ``running`` again. Step-less metric values continue after the
        last step each metric already has, so no step is logged twice.

        Args:
            backend: Where the run lives.
            run_uuid: The run's id.
            owns_backend: Close ``backend`` when the run ends.

        Raises:
            RunNotFound: when no run has this id.
        """
        registry = backend.registry
        record = registry.get_run(run_uuid)
        next_steps = {key: step + 1 for key, step in registry.last_steps(run_uuid).items()}
        registry.set_run_status(run_uuid, RunStatus.RUNNING.value)
        run = cls.__new__(cls)
        run._start(backend, record, owns_backend=owns_backend, next_steps=next_steps)
        return run

    def __repr__(self) -> str:
        return f"Run(uuid={self.uuid!r}, project={self.project!r}, name={self.name!r})"

    # the offline spool -------------------------------------------------------------------

    @property
    def offline(self) -> bool:
        """Whether the run lives in the offline spool (its server was unreachable at start)."""
        return self._offline is not None

    def _spooled(self) -> Spool:
        """Return the spool for writes the server could not take, saying so the first time."""
        with self._spool_lock:
            if self._spool is None:
                spool = Spool(self.backend.location.uri)
                spool.adopt(self._record)
                announce(
                    f"{self.backend.location.uri} cannot be reached; what run {self.uuid} "
                    f"cannot send goes to the offline spool {spool.folder}: 'ensign sync' "
                    "sends it once the server is back"
                )
                self._spool = spool
            return self._spool

    def _spool_batch(self, batch: RunBatch) -> None:
        # The server may have written it and only its answer been lost: keep it as sent.
        self._spooled().keep_batch(batch)

    @property
    def ended(self) -> bool:
        """Whether ``end()`` was called."""
        return self._ended

    def _check_online(self) -> None:
        if self._offline is not None:
            raise ServerUnavailable(
                f"run {self.uuid} is in the offline spool: promotion needs the server, "
                "which decides against the versions it holds; sync the run and promote later"
            )

    def _check_open(self) -> None:
        if self._ended:
            raise RunEnded(f"run {self.uuid} has ended; start a new one with tracking.init()")

    # params, tags, outputs ----------------------------------------------------------------

    def log_params(self, **params: Any) -> None:
        """Log parameters (the run's inputs); a key logged again takes the new value."""
        self._check_open()
        self._writer.add_params(params)

    log_inputs = log_params

    def log_outputs(self, **outputs: Any) -> None:
        """Log outputs: final values that are not a metric history (a path, a count, ...)."""
        self._check_open()
        self._writer.add_outputs(outputs)

    def log_tags(self, *tags: str | Sequence[str]) -> None:
        """Add tags (strings, or lists of strings)."""
        self._check_open()
        flat: list[str] = []
        for tag in tags:
            flat.extend([tag] if isinstance(tag, str) else list(tag))
        self._writer.add_tags(flat)

    # metrics ------------------------------------------------------------------------------

    def log_metric(
        self, name: str, value: float, step: int | None = None, timestamp: float | None = None
    ) -> None:
        """Log one value of a metric.

        NaN and infinities are stored as such (conditions treat NaN as failing every
        comparison). A step-less value takes the metric's next step.

        Raises:
            RunEnded: after ``end()``.
            InvalidMetric: for a bad name or step, or a value that is not a number.
        """
        if name.__class__ is not str:
            check_metric_name(name)
        self._log_metrics(step, timestamp, {name: value})

    def log_metrics(
        self, step: int | None = None, timestamp: float | None = None, **metrics: float
    ) -> None:
        """Log several metrics at one step; returns in about a microsecond.

        A call is all or nothing: when one value is refused, none of the call is logged.

        Raises:
            RunEnded: after ``end()``.
            InvalidMetric: for a bad name or step, or a value that is not a number.
        """
        self._log_metrics(step, timestamp, metrics)

    def _log_metrics(
        self, step: int | None, timestamp: float | None, metrics: dict[str, Any]
    ) -> None:
        """Queue ``metrics`` (a dict this call owns); the hot path of every log call.

        Kept lean on purpose: one pass converts the values (so a bad one is refused before
        anything is queued), a second appends ``(name, step, value, timestamp)`` tuples to
        the writer's deque.
        """
        if self._ended:
            self._check_open()
        if step.__class__ is not int or not -_STEP_LIMIT <= step < _STEP_LIMIT:
            step = _step(step)
        names = self._metric_names
        for key, value in metrics.items():
            if key not in names:
                names.add(check_metric_name(key))
            if value.__class__ is not float:  # a float is kept as is (floats are immutable)
                try:
                    metrics[key] = float(value)
                except (TypeError, ValueError):
                    raise InvalidMetric(
                        f"metric {key!r} must be a number, not {type(value).__name__}"
                    ) from None
        timestamp = _now() if timestamp is None else _timestamp(timestamp)
        append = self._append_metric
        for key, value in metrics.items():
            append((key, step, value, timestamp))

    # waiting ------------------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every log call so far is written and every upload stored.

        Raises:
            BackgroundError: with everything that failed.
        """
        errors = self._pool.wait()
        try:
            self._writer.flush()
        except Exception as exc:
            errors.append(exc)
        if errors:
            # Reported now, but the run still lost work: it cannot end "succeeded".
            self._failed_before = True
            raise BackgroundError(errors) from errors[0]

    # promotion ----------------------------------------------------------------------------

    def evaluate_promotion(
        self,
        when: str | None = None,
        better_than: str | None = None,
        metric: str | None = None,
        mode: Mode = "max",
        min_delta: float = 0.0,
        kind: str = VersionKind.ARTIFACT.value,
    ) -> PromotionDecision:
        """Answer whether the run would be promoted, without registering (a dry run).

        The decision is recorded on the run, marked as a dry run.
        """
        promotion = Promotion(
            when=when, better_than=better_than, metric=metric, mode=mode, min_delta=min_delta
        )
        self._check_online()
        self.flush()
        decision = decide(
            self.backend.registry, self.uuid, self.project, kind, promotion, dry_run=True
        )
        self.backend.registry.record_decision(self.uuid, decision)
        return decision

    def _promote(
        self,
        kind: str,
        *,
        version: str | None,
        description: str | None,
        tags: Sequence[str] | None,
        content: dict[str, Any] | None,
        artifacts: Sequence[str] | None,
        force: bool,
        promotion: Promotion,
    ) -> ArtifactVersion | None:
        self._check_online()
        self.flush()
        registry = self.backend.registry
        decision = decide(registry, self.uuid, self.project, kind, promotion, dry_run=False)
        if not decision.promoted:
            registry.record_decision(self.uuid, decision)
            return None
        chosen = select_refs(registry.list_refs(self.uuid), artifacts)
        manifest, store_uri = manifest_of(chosen)
        spec = VersionSpec(
            name=version,
            description=description,
            tags=list(tags or []),
            content=dict(content or {}),
            run=self.uuid,
            artifacts=[r.name for r in chosen],
            manifest=manifest,
            store_uri=store_uri,
            stage=promotion.stage,
            stage_reason="Promotion",
            stage_message="; ".join(decision.reasons),
            decision=decision,
        )
        return register_version(self.backend, self.project, kind, spec, force=force)

    def promote_to_artifact_version(
        self,
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
        """Register this run's artifacts as a version when the conditions hold.

        Waits for pending writes and uploads first. The decision and its reasons are
        recorded on the run whether or not it promotes.

        Args:
            version: The name; ``None`` takes the next ``vN`` (atomic across processes).
            description: The version's description.
            tags: The version's tags.
            content: A JSON object stored with the version.
            artifacts: Names of the run's refs to carry; all outputs when ``None``.
            force: Replace an existing version of that name.
            when: A condition over the run's metrics, e.g. ``"val_acc >= 0.9"``.
            better_than: A stage whose holder's producing run must be beaten on ``metric``.
            metric: The metric ``better_than`` compares.
            mode: ``"max"`` or ``"min"``: which way is better.
            min_delta: The margin by which the run must be better.
            stage: The stage the version starts in.

        Returns:
            The version, or ``None`` when a condition did not hold.

        Raises:
            InvalidCondition: ``when`` does not parse.
            UnknownMetric: a condition names a metric the run never logged.
            VersionExists: the name is taken and ``force`` is false.
            ArtifactNotFound: ``artifacts`` names a ref the run does not have.
        """
        self._check_open()
        promotion = Promotion(
            when=when,
            better_than=better_than,
            metric=metric,
            mode=mode,
            min_delta=min_delta,
            stage=stage,
        )
        return self._promote(
            VersionKind.ARTIFACT.value,
            version=version,
            description=description,
            tags=tags,
            content=content,
            artifacts=artifacts,
            force=force,
            promotion=promotion,
        )

    def promote_to_model_version(
        self,
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
        """Like :meth:`promote_to_artifact_version`, registering a **model** version."""
        self._check_open()
        promotion = Promotion(
            when=when,
            better_than=better_than,
            metric=metric,
            mode=mode,
            min_delta=min_delta,
            stage=stage,
        )
        return self._promote(
            VersionKind.MODEL.value,
            version=version,
            description=description,
            tags=tags,
            content=content,
            artifacts=artifacts,
            force=force,
            promotion=promotion,
        )

    def promote(
        self, promotion: Promotion, kind: str = VersionKind.MODEL.value
    ) -> ArtifactVersion | None:
        """Promote according to a :class:`~ensign.Promotion` (what integrations call)."""
        self._check_open()
        return self._promote(
            kind,
            version=promotion.version,
            description=promotion.description,
            tags=promotion.tags,
            content=None,
            artifacts=None,
            force=False,
            promotion=promotion,
        )

    # ending -------------------------------------------------------------------------------

    def end(self, status: str | RunStatus | None = None) -> None:
        """Wait for every pending write and upload, then close the run.

        Args:
            status: ``succeeded`` (default), ``failed`` or ``stopped``; a run whose
                background work failed ends ``failed``.

        Raises:
            BackgroundError: with what the background work failed with.
        """
        final = parse_status(status) if status is not None else RunStatus.SUCCEEDED
        with self._end_lock:
            if self._ended:
                return
            self._ended = True
        errors = self._pool.wait()
        self._pool.shutdown()
        try:
            self._writer.close()
        except Exception as exc:
            errors.append(exc)
        if errors or self._failed_before:
            final = RunStatus.FAILED
        try:
            try:
                if self._writer.spooling:  # its last writes are in the spool: so is its end
                    raise ServerUnavailable(f"run {self.uuid} is spooling")
                self.backend.registry.set_run_status(self.uuid, final.value, ended=True)
            except ServerUnavailable:
                if not self.backend.location.is_remote:
                    raise
                self._spooled().backend.registry.set_run_status(self.uuid, final.value, ended=True)
        finally:
            for spool in (self._spool, self._offline):
                if spool is not None:
                    spool.close()
            if self._owns_backend:
                self.backend.close()
        if errors:
            raise BackgroundError(errors) from errors[0]

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end()
            return
        status = RunStatus.STOPPED if issubclass(exc_type, KeyboardInterrupt) else RunStatus.FAILED
        try:
            self.end(status)
        except BackgroundError as error:
            # The block's own exception is the one to see; the background failure rides on it.
            if exc is not None and hasattr(exc, "add_note"):
                exc.add_note(f"ensign: {error}")


def _step(step: Any) -> int | None:
    """Return ``step`` as an ``int`` (numpy integers and the like are accepted)."""
    if step is None:
        return None
    try:
        number = operator.index(step)
    except TypeError:
        raise InvalidMetric(f"a step must be an integer, not {type(step).__name__}") from None
    if not -_STEP_LIMIT <= number < _STEP_LIMIT:
        raise InvalidMetric(f"a step must fit in 64 bits, not {number}")
    return number


def _timestamp(timestamp: Any) -> float:
    """Return an explicit ``timestamp`` (seconds since the epoch) as a finite float."""
    try:
        seconds = float(timestamp)
    except (TypeError, ValueError):
        raise InvalidMetric(
            f"a timestamp must be a number of seconds, not {type(timestamp).__name__}"
        ) from None
    if not math.isfinite(seconds):
        raise InvalidMetric(f"a timestamp must be finite, not {seconds}")
    return seconds
