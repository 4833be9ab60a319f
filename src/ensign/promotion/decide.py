"""Deciding a promotion: resolve metrics, evaluate the condition, compare against a stage."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone

from ensign.errors import UnknownMetric
from ensign.promotion.grammar import MetricRef, format_value
from ensign.promotion.spec import Mode, Promotion
from ensign.records import MetricPoint, PromotionDecision
from ensign.registry import Registry

__all__ = ["decide", "resolve_metric"]


def _finite(points: Sequence[MetricPoint]) -> list[float]:
    return [p.value for p in points if not math.isnan(p.value)]


def resolve_metric(
    history: dict[str, list[MetricPoint]], ref: MetricRef, mode: Mode = "max"
) -> float:
    """Return the value a reference stands for in a run's metric history.

    A plain name is the last logged value; ``min``/``max`` are over the history, ignoring
    NaN; ``best`` is ``max`` or ``min`` according to ``mode``.

    Raises:
        UnknownMetric: the run never logged the metric; lists the ones it did.
    """
    points = history.get(ref.metric)
    if not points:
        raise UnknownMetric(ref.metric, history)
    if ref.function == "last":
        return points[-1].value
    values = _finite(points)
    if not values:
        return math.nan
    function = ref.function if ref.function != "best" else mode
    return max(values) if function == "max" else min(values)


def _beats(value: float, other: float, mode: Mode, min_delta: float) -> bool:
    return value > other + min_delta if mode == "max" else value < other - min_delta


def decide(
    registry: Registry,
    run_uuid: str,
    project: str,
    kind: str,
    promotion: Promotion,
    *,
    dry_run: bool,
) -> PromotionDecision:
    """Evaluate a promotion for a run without recording or registering anything.

    Raises:
        UnknownMetric: when the condition or ``metric`` names a metric the run never logged.
    """
    history = registry.get_metrics(run_uuid)
    reasons: list[str] = []
    holds = True
    condition = promotion.condition
    if condition is not None:
        holds, reasons = condition.evaluate(
            lambda ref: resolve_metric(history, ref, promotion.mode)
        )
    if promotion.better_than is not None:
        assert promotion.metric is not None  # Promotion checks this
        metric = promotion.metric
        own = resolve_metric(history, MetricRef("last", metric))
        holder = registry.stage_holder(project, kind, promotion.better_than)
        if holder is None:
            reasons.append(f"no {kind} version holds {promotion.better_than}: comparison holds")
        elif holder.run is None or holder.run == run_uuid:
            reasons.append(
                f"{promotion.better_than} holder {holder.name} has no other producing run: "
                "comparison holds"
            )
        else:
            theirs_history = registry.get_metrics(holder.run, [metric])
            if not theirs_history.get(metric):
                reasons.append(
                    f"{promotion.better_than} holder {holder.name} (run {holder.run}) never "
                    f"logged {metric}: comparison holds"
                )
            else:
                theirs = theirs_history[metric][-1].value
                better = _beats(own, theirs, promotion.mode, promotion.min_delta)
                sign, plus = (">", "+") if promotion.mode == "max" else ("<", "-")
                bar = format_value(theirs)
                if promotion.min_delta:
                    bar += f" {plus} {format_value(promotion.min_delta)}"
                reasons.append(
                    f"{metric} = {format_value(own)} {sign} {bar} of {promotion.better_than} "
                    f"holder {holder.name}: {str(better).lower()}"
                )
                holds = holds and better
    if condition is None and promotion.better_than is None:
        reasons.append("no condition: promoted unconditionally")
    return PromotionDecision(
        promoted=holds,
        version=None,
        reasons=reasons,
        evaluated_at=datetime.now(timezone.utc),
        dry_run=dry_run,
    )
