"""``Promotion``: what integrations take as ``promote=``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ensign.errors import ConfigurationError
from ensign.promotion.grammar import Condition, parse_condition
from ensign.records import parse_stage

__all__ = ["Mode", "Promotion", "as_promotion"]

Mode = Literal["max", "min"]


@dataclass(frozen=True)
class Promotion:
    """When and how a run is promoted to a version.

    Args:
        when: A condition such as ``"val_acc >= 0.9 and val_loss < 0.3"``.
        better_than: A stage (``"production"``); the run must beat the producer of the
            version that currently holds it on ``metric``. No holder: the comparison holds.
        metric: The metric ``better_than`` compares.
        mode: ``"max"`` when higher is better, ``"min"`` when lower is; also what
            ``best(...)`` means in ``when``.
        min_delta: How much better the run must be.
        stage: The stage the new version starts in.
        version: The version name; ``None`` takes the next ``vN``.
        description: The version's description.
        tags: The version's tags.

    Raises:
        InvalidCondition: when ``when`` does not parse.
        ConfigurationError: for ``better_than`` without ``metric``, a bad ``mode`` or a
            negative ``min_delta``.
        InvalidStage: for an unknown ``better_than`` or ``stage``.
    """

    when: str | None = None
    better_than: str | None = None
    metric: str | None = None
    mode: Mode = "max"
    min_delta: float = 0.0
    stage: str | None = None
    version: str | None = None
    description: str | None = None
    tags: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.when is not None:
            parse_condition(self.when)
        if self.mode not in ("max", "min"):
            raise ConfigurationError(f"mode must be 'max' or 'min', not {self.mode!r}")
        if self.better_than is not None:
            parse_stage(self.better_than)
            if not self.metric:
                raise ConfigurationError("better_than needs metric=... to compare runs on")
        if self.min_delta < 0:
            raise ConfigurationError(f"min_delta must not be negative, not {self.min_delta}")
        if self.stage is not None:
            parse_stage(self.stage)

    @property
    def condition(self) -> Condition | None:
        """The parsed ``when``, if any."""
        return parse_condition(self.when) if self.when is not None else None

    @property
    def metrics(self) -> set[str]:
        """Every metric name the promotion needs the run to log."""
        names = {ref.metric for ref in self.condition.metrics} if self.condition else set()
        if self.metric:
            names.add(self.metric)
        return names


def as_promotion(value: str | Promotion | None) -> Promotion | None:
    """Return ``value`` as a :class:`Promotion` (a string is shorthand for ``when``)."""
    if value is None or isinstance(value, Promotion):
        return value
    if isinstance(value, str):
        return Promotion(when=value)
    raise ConfigurationError(
        f"promote must be a condition string or a Promotion, not {type(value).__name__}"
    )
