"""Promotion at the end of a fit: the best checkpoint becomes a model version, or nothing does."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from ensign.errors import ConfigurationError, UnknownMetric
from ensign.promotion.decide import decide
from ensign.promotion.spec import Promotion
from ensign.records import ArtifactVersion, PromotionDecision, RunStatus, VersionKind
from ensign.tracking.refs import is_remote_path
from ensign.tracking.run import Run

__all__ = [
    "MODEL_REF",
    "MissingPromotionMetric",
    "promote_checkpoint",
    "record_no_promotion",
    "run_status",
]

#: The name of the ref that carries the promoted checkpoint (kind ``model``).
MODEL_REF = "model"

_INTERRUPTIONS: tuple[type[BaseException], ...] = (KeyboardInterrupt,)
try:  # Lightning >= 2.2 raises it when SIGTERM stops a fit
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    _INTERRUPTIONS += (SIGTERMException,)
except ImportError:  # pragma: no cover - older Lightning
    pass


class MissingPromotionMetric(UnknownMetric):
    """``promote=`` names a metric that the model does not log.

    Attributes:
        missing: The metrics the promotion needs and the run lacks.
        logged: The metrics the run did log.
    """

    def __init__(self, missing: Sequence[str], logged: Iterable[str], when: str) -> None:
        self.missing = tuple(missing)
        self.metric = self.missing[0]
        self.logged = tuple(sorted(logged))
        names = ", ".join(repr(m) for m in self.missing)
        listed = ", ".join(self.logged) if self.logged else "nothing"
        # Skip UnknownMetric's own message, keep its type (a NotFound / LookupError).
        Exception.__init__(
            self,
            f"promote= needs {names}, which the model has not logged {when}; it logged: "
            f"{listed}. Check the names given to self.log(...) and to promote=.",
        )


def run_status(status: str, exception: BaseException | None) -> RunStatus:
    """Map Lightning's ``finalize`` status to a run status.

    ``success`` → ``succeeded``; ``failed`` → ``failed``, or ``stopped`` when the fit was
    interrupted (``KeyboardInterrupt``, SIGTERM); ``finished`` (Lightning's SLURM requeue:
    the job stops to come back) and ``aborted`` → ``stopped``.

    Raises:
        ConfigurationError: for any other status.
    """
    if status == "success":
        return RunStatus.SUCCEEDED
    if status == "failed":
        if isinstance(exception, _INTERRUPTIONS):
            return RunStatus.STOPPED
        return RunStatus.FAILED
    if status in ("finished", "aborted", "stopped", "interrupted"):
        return RunStatus.STOPPED
    raise ConfigurationError(
        f"unknown finalize status {status!r}; Lightning passes 'success', 'failed' or 'finished'"
    )


def current_exception() -> BaseException | None:
    """The exception being handled, if any (Lightning finalizes inside its ``except``)."""
    return sys.exc_info()[1]


def record_no_promotion(run: Run, reasons: list[str]) -> PromotionDecision:
    """Record on the run that nothing was promoted, and why."""
    decision = PromotionDecision(
        promoted=False,
        version=None,
        reasons=reasons,
        evaluated_at=datetime.now(timezone.utc),
    )
    run.backend.registry.record_decision(run.uuid, decision)
    return decision


def promote_checkpoint(
    run: Run,
    promotion: Promotion,
    checkpoint: str | None,
    summary: dict[str, Any],
    hyperparams: dict[str, Any],
) -> ArtifactVersion | None:
    """Promote ``checkpoint`` as a model version when ``promotion`` holds on the run.

    The decision is taken on the run's final metrics. When it holds, the checkpoint is
    logged as the ``model`` ref and registered as a model version that carries it (its
    lineage: the run, whose parameters and input refs stay attached). Either way the
    decision and its reasons are recorded on the run.

    Raises:
        MissingPromotionMetric: when the run never logged a metric the promotion needs
            (the decision, not promoted, is recorded first).
    """
    run.flush()
    registry = run.backend.registry
    logged = set(registry.last_steps(run.uuid))
    missing = sorted(promotion.metrics - logged)
    if missing:
        error = MissingPromotionMetric(missing, logged, "by the end of the fit")
        record_no_promotion(run, [str(error)])
        raise error
    if not checkpoint:
        record_no_promotion(run, ["no checkpoint was saved: nothing to promote"])
        return None
    kind = VersionKind.MODEL.value
    verdict = decide(registry, run.uuid, run.project, kind, promotion, dry_run=False)
    if not verdict.promoted:
        registry.record_decision(run.uuid, verdict)
        return None
    file_name = checkpoint.rstrip("/").rsplit("/", 1)[-1]
    details = {**summary, "checkpoint": file_name, "path": checkpoint}
    run.log_artifact_ref(
        checkpoint,
        kind="model",
        name=MODEL_REF,
        summary=details,
        rel_path=None if is_remote_path(checkpoint) else file_name,
    )
    return run.promote_to_model_version(
        version=promotion.version,
        description=promotion.description,
        tags=promotion.tags,
        content={"checkpoint": details, "hyperparameters": hyperparams},
        artifacts=[MODEL_REF],
        when=promotion.when,
        better_than=promotion.better_than,
        metric=promotion.metric,
        mode=promotion.mode,
        min_delta=promotion.min_delta,
        stage=promotion.stage,
    )
