"""Parse a bundle's goals file (``testsPath`` in ``openlayer.json``).

The file is a JSON list of goals::

    [{"name": "Accuracy above 0.9", "type": "performance", "subtype": "metricThreshold",
      "thresholds": [{"insightName": "metrics", "measurement": "accuracy",
                      "operator": ">=", "value": 0.9}],
      "usesValidationDataset": true, "usesTrainingDataset": false}]

Every malformed field raises :class:`~ensign.errors.InvalidBundle` naming the file and the
field by its path (``tests.json: [2].thresholds[0].operator ...``); measurements are checked
against :data:`ensign.bundles.measurements.KNOWN` and the task type when the file is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ensign.bundles.config import BundleConfig, _bad, _choices, _kind, read_json
from ensign.bundles.measurements import KNOWN
from ensign.errors import InvalidBundle

__all__ = ["OPERATORS", "Goal", "Threshold", "load_goals"]

OPERATORS = ("<", "<=", ">", ">=", "==", "!=", "is")
"""The comparison operators a threshold may use; ``is`` means ``==``."""

# ``==``, ``!=`` and ``is`` compare with this tolerance, so 0.1 + 0.2 == 0.3 holds.
_REL_TOL = 1e-9
_ABS_TOL = 1e-12


@dataclass(frozen=True)
class Threshold:
    """One condition of a goal: ``measurement <operator> value``.

    Attributes:
        insight_name: The openlayer insight the measurement comes from (informational).
        measurement: A key of :data:`ensign.bundles.measurements.KNOWN`.
        operator: One of :data:`OPERATORS`.
        value: The threshold the measured value is compared with.
    """

    insight_name: str | None
    measurement: str
    operator: str
    value: float

    def holds(self, measured: float) -> bool:
        """Say whether ``measured <operator> value`` holds; NaN never holds.

        Args:
            measured: The measured value.

        Returns:
            Whether the condition holds.
        """
        if math.isnan(measured) or math.isnan(self.value):
            return False
        equal = math.isclose(measured, self.value, rel_tol=_REL_TOL, abs_tol=_ABS_TOL)
        if self.operator in ("==", "is"):
            return equal
        if self.operator == "!=":
            return not equal
        if self.operator == "<":
            return measured < self.value
        if self.operator == "<=":
            return measured <= self.value
        if self.operator == ">":
            return measured > self.value
        return measured >= self.value


@dataclass(frozen=True)
class Goal:
    """One goal (an openlayer "test"): passes when all its thresholds hold.

    Attributes:
        name: The goal's name.
        type: The goal's type (e.g. ``performance``, ``integrity``), informational.
        subtype: The goal's subtype (e.g. ``metricThreshold``), informational.
        thresholds: The conditions; at least one.
        uses_validation: Measure on the dataset labelled ``validation``.
        uses_training: Measure on the dataset labelled ``training``.
    """

    name: str
    type: str
    subtype: str | None
    thresholds: tuple[Threshold, ...]
    uses_validation: bool
    uses_training: bool


def load_goals(config: BundleConfig) -> list[Goal]:
    """Read and check the goals file that ``config`` names.

    Args:
        config: The bundle config.

    Returns:
        The goals in file order; empty when the config has no ``testsPath``.

    Raises:
        InvalidBundle: The file is missing, not JSON, or malformed; a threshold names an
            unknown measurement (the message lists the known ones) or one that does not
            apply to the task type. ``where`` is the field's path (``[2].thresholds[0].operator``)
            or the file.
    """
    if config.tests_path is None:
        return []
    label = config.tests_path
    path = config.path_of(label)
    if not path.is_file():
        raise InvalidBundle(
            f"{label}: the goals file named by testsPath does not exist in the bundle",
            where=label,
        )
    data = read_json(path, label)
    if not isinstance(data, list):
        raise InvalidBundle(
            f"{label}: the goals file must hold a JSON list of goals, got {_kind(data)}",
            where=label,
        )
    return [_goal(item, f"[{index}]", label, config.task_type) for index, item in enumerate(data)]


def _goal(item: object, at: str, label: str, task_type: str) -> Goal:
    if not isinstance(item, dict):
        raise _bad(label, at, f"must be an object, got {_kind(item)}")
    name = _string(item, "name", at, label)
    goal_type = _string(item, "type", at, label)
    subtype = item.get("subtype")
    if subtype is not None and not isinstance(subtype, str):
        raise _bad(label, f"{at}.subtype", f"must be a string, got {subtype!r}")
    raw = item.get("thresholds")
    if not isinstance(raw, list) or not raw:
        raise _bad(label, f"{at}.thresholds", f"must be a non-empty list, got {raw!r}")
    thresholds = tuple(
        _threshold(entry, f"{at}.thresholds[{index}]", label, task_type)
        for index, entry in enumerate(raw)
    )
    return Goal(
        name=name,
        type=goal_type,
        subtype=subtype,
        thresholds=thresholds,
        uses_validation=_flag(item, "usesValidationDataset", at, label),
        uses_training=_flag(item, "usesTrainingDataset", at, label),
    )


def _threshold(entry: object, at: str, label: str, task_type: str) -> Threshold:
    if not isinstance(entry, dict):
        raise _bad(label, at, f"must be an object, got {_kind(entry)}")
    insight = entry.get("insightName")
    if insight is not None and not isinstance(insight, str):
        raise _bad(label, f"{at}.insightName", f"must be a string, got {insight!r}")
    measurement = _string(entry, "measurement", at, label)
    known = KNOWN.get(measurement)
    if known is None:
        raise _bad(
            label,
            f"{at}.measurement",
            f"names an unknown measurement {measurement!r}; "
            f"known measurements: {', '.join(sorted(KNOWN))}",
        )
    if task_type not in known.tasks:
        raise _bad(
            label,
            f"{at}.measurement",
            f"{measurement!r} does not apply to task type {task_type!r} "
            f"(it applies to {', '.join(known.tasks)})",
        )
    operator = entry.get("operator")
    if operator not in OPERATORS:
        raise _bad(
            label, f"{at}.operator", f"must be one of {_choices(OPERATORS)}, got {operator!r}"
        )
    return Threshold(
        insight_name=insight,
        measurement=measurement,
        operator=str(operator),
        value=_number(entry.get("value"), f"{at}.value", label),
    )


def _string(data: dict[str, Any], key: str, at: str, label: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _bad(label, f"{at}.{key}", f"must be a non-empty string, got {value!r}")
    return value


def _flag(data: dict[str, Any], key: str, at: str, label: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise _bad(label, f"{at}.{key}", f"must be true or false, got {value!r}")
    return value


def _number(value: object, field: str, label: str) -> float:
    if isinstance(value, bool):  # ``"operator": "is", "value": true``
        return 1.0 if value else 0.0
    if not isinstance(value, (int, float)):
        raise _bad(label, field, f"must be a number, got {value!r}")
    return float(value)
