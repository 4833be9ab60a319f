"""Pushed bundles: safe unpacking, ``openlayer.json`` and goals parsing, goal evaluation.

A bundle is a folder with ``openlayer.json`` (task type, model, datasets, goals file),
pushed as a tarball. :func:`evaluate_archive` unpacks one safely and evaluates its goals
and never raises for a bad bundle; the pieces are usable on their own. Measurements need
pandas and scikit-learn (the ``server`` extra); they are imported only when used.
"""

from __future__ import annotations

from ensign.bundles.config import (
    TASK_TYPES,
    BundleConfig,
    DatasetConfig,
    ModelConfig,
    load_config,
)
from ensign.bundles.evaluate import (
    DEFAULT_TIME_LIMIT,
    Evaluation,
    GoalResult,
    evaluate_archive,
    evaluate_bundle,
)
from ensign.bundles.goals import OPERATORS, Goal, Threshold, load_goals
from ensign.bundles.measurements import KNOWN, LoadedDataset, Measurement, load_dataset, measure
from ensign.bundles.unpack import DEFAULT_MAX_BUNDLE_BYTES, unpack_bundle

__all__ = [
    "DEFAULT_MAX_BUNDLE_BYTES",
    "DEFAULT_TIME_LIMIT",
    "KNOWN",
    "OPERATORS",
    "TASK_TYPES",
    "BundleConfig",
    "DatasetConfig",
    "Evaluation",
    "Goal",
    "GoalResult",
    "LoadedDataset",
    "Measurement",
    "ModelConfig",
    "Threshold",
    "evaluate_archive",
    "evaluate_bundle",
    "load_config",
    "load_dataset",
    "load_goals",
    "measure",
    "unpack_bundle",
]
