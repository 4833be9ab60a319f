"""Evaluate a bundle: read its config and goals, make predictions if needed, measure each goal.

A ``shell`` model's datasets already hold predictions. A ``full`` model's ``batchCommand``
is run (only when the caller allows run scripts) in the bundle folder, in its own process
group, with a time limit; it is expected to write the predictions (and scores) columns
that the config names into the dataset CSVs at their configured paths, which are read
only after it has finished. When it ends, anything it left running is killed too.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ensign.bundles.config import BundleConfig, load_config
from ensign.bundles.goals import Goal, Threshold, load_goals
from ensign.bundles.measurements import LoadedDataset, load_dataset, measure
from ensign.bundles.unpack import DEFAULT_MAX_BUNDLE_BYTES, unpack_bundle
from ensign.errors import InvalidBundle, PayloadTooLarge

__all__ = [
    "DEFAULT_TIME_LIMIT",
    "UNPACKED_FOLDER",
    "Evaluation",
    "GoalResult",
    "evaluate_archive",
    "evaluate_bundle",
]

DEFAULT_TIME_LIMIT = 600.0
"""Seconds a ``full`` model's ``batchCommand`` may run before it is killed."""

UNPACKED_FOLDER = "bundle"
"""The folder inside ``workdir`` that :func:`evaluate_archive` unpacks into."""

_STDERR_TAIL_BYTES = 4096
_STDERR_TAIL_LINES = 10


@dataclass(frozen=True)
class GoalResult:
    """The outcome of one goal.

    Attributes:
        name: The goal's name.
        status: ``passing``, ``failing``, or ``error`` (it could not be measured).
        measurement: The measurement of the deciding threshold (the first that does not
            hold, else the first).
        value: The measured value of that threshold (``None`` for an error).
        operator: That threshold's operator.
        threshold: That threshold's value.
        dataset: The name of the dataset it was measured on.
        message: Every check of the goal in words, or why it could not be measured.
    """

    name: str
    status: str
    measurement: str
    value: float | None
    operator: str
    threshold: float
    dataset: str
    message: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-able data (NaN and infinities become ``None``)."""
        return {
            "name": self.name,
            "status": self.status,
            "measurement": self.measurement,
            "value": _finite(self.value),
            "operator": self.operator,
            "threshold": _finite(self.threshold),
            "dataset": self.dataset,
            "message": self.message,
        }


@dataclass(frozen=True)
class Evaluation:
    """The outcome of evaluating a bundle.

    Attributes:
        status: ``completed`` when every goal could be measured, else ``failed``.
        status_message: E.g. ``3 of 4 goals passing``, or why the evaluation failed.
        passing: Goals passing.
        failing: Goals not passing (failing, or not measurable).
        total: Goals in the bundle (0 when the bundle could not be read).
        results: One result per goal, in the goals file's order.
    """

    status: str
    status_message: str
    passing: int
    failing: int
    total: int
    results: tuple[GoalResult, ...]

    @classmethod
    def failed(cls, message: str) -> Evaluation:
        """Return a failed evaluation with no results.

        Args:
            message: Why it failed.

        Returns:
            The evaluation.
        """
        return cls("failed", message, 0, 0, 0, ())

    def to_dict(self) -> dict[str, Any]:
        """Return the evaluation as JSON-able data with the push API's camelCase keys."""
        return {
            "status": self.status,
            "statusMessage": self.status_message,
            "passingGoalCount": self.passing,
            "failingGoalCount": self.failing,
            "totalGoalCount": self.total,
            "results": [result.to_dict() for result in self.results],
        }


def evaluate_bundle(
    root: Path, *, allow_run_scripts: bool = False, time_limit: float = DEFAULT_TIME_LIMIT
) -> Evaluation:
    """Evaluate the goals of an unpacked bundle.

    Args:
        root: The bundle folder (holding ``openlayer.json``).
        allow_run_scripts: Whether a ``full`` model's ``batchCommand`` may be run; when not,
            such a bundle gives a ``failed`` evaluation.
        time_limit: Seconds the ``batchCommand`` may run before its process group is killed.

    Returns:
        The evaluation: ``failed`` when the command was refused, timed out or exited
        non-zero, or when a goal could not be measured; else ``completed``.

    Raises:
        InvalidBundle: The config or goals file is malformed, or a dataset is missing or
            lacks a configured column.
    """
    root = Path(root)
    config = load_config(root)
    goals = load_goals(config)
    model = config.model
    if model is not None and model.model_type == "full" and model.batch_command is not None:
        if not allow_run_scripts:
            return Evaluation.failed(
                "the model is 'full': its batchCommand must run to make predictions, and this "
                "server does not allow run scripts (start it with --allow-run-scripts, or push "
                "a shell model whose datasets hold the predictions)"
            )
        problem = _run_batch_command(model.batch_command, root, time_limit)
        if problem is not None:
            return Evaluation.failed(problem)
    loaded = {dataset.label: load_dataset(config, dataset) for dataset in config.datasets}
    results = tuple(_evaluate_goal(goal, config, loaded) for goal in goals)
    passing = sum(result.status == "passing" for result in results)
    errors = [result for result in results if result.status == "error"]
    message = f"{passing} of {len(results)} goals passing"
    if errors:
        message += f"; {len(errors)} could not be measured: {errors[0].message}"
    return Evaluation(
        status="failed" if errors else "completed",
        status_message=message,
        passing=passing,
        failing=len(results) - passing,
        total=len(results),
        results=results,
    )


def evaluate_archive(
    archive: Path,
    workdir: Path,
    *,
    allow_run_scripts: bool = False,
    time_limit: float = DEFAULT_TIME_LIMIT,
    max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
) -> Evaluation:
    """Unpack a bundle tarball safely and evaluate it; a bad bundle never raises.

    The archive is unpacked into ``workdir / UNPACKED_FOLDER`` (``workdir`` is created if
    needed and may hold other files, such as the archive itself); the files are left there.

    Args:
        archive: The tarball.
        workdir: A folder for the unpacked bundle.
        allow_run_scripts: Whether a ``full`` model's ``batchCommand`` may be run.
        time_limit: Seconds the ``batchCommand`` may run.
        max_bytes: The largest total size of the bundle's files.

    Returns:
        The evaluation; any :class:`~ensign.errors.InvalidBundle` or
        :class:`~ensign.errors.PayloadTooLarge` becomes a ``failed`` evaluation with the
        error's message.
    """
    try:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        root = unpack_bundle(archive, Path(workdir) / UNPACKED_FOLDER, max_bytes=max_bytes)
        return evaluate_bundle(root, allow_run_scripts=allow_run_scripts, time_limit=time_limit)
    except (InvalidBundle, PayloadTooLarge) as error:
        return Evaluation.failed(str(error))


def _datasets_for(goal: Goal) -> list[str]:
    """Return the dataset labels a goal is measured on (empty: the default)."""
    labels = []
    if goal.uses_validation:
        labels.append("validation")
    if goal.uses_training:
        labels.append("training")
    return labels


def _evaluate_goal(
    goal: Goal, config: BundleConfig, loaded: dict[str, LoadedDataset]
) -> GoalResult:
    if not goal.thresholds:  # the goals parser refuses these; a hand-made Goal may not
        return _error(goal, Threshold(None, "", "", math.nan), "", "it has no thresholds")
    first = goal.thresholds[0]
    labels = _datasets_for(goal)
    if not labels:
        default = next((label for label in ("validation", "training") if label in loaded), None)
        if default is None:
            return _error(goal, first, "", "the bundle has no validation or training dataset")
        labels = [default]
    checks: list[tuple[Threshold, str, float, bool]] = []
    for label in labels:
        dataset = loaded.get(label)
        if dataset is None:
            return _error(
                goal, first, "", f"it needs a dataset labelled {label!r}; the bundle has none"
            )
        for threshold in goal.thresholds:
            try:
                value = measure(threshold.measurement, dataset, config.task_type)
            except InvalidBundle as error:
                return _error(goal, threshold, dataset.config.name, str(error))
            checks.append((threshold, dataset.config.name, value, threshold.holds(value)))
    deciding = next((check for check in checks if not check[3]), checks[0])
    threshold, name, value, _ = deciding
    return GoalResult(
        name=goal.name,
        status="passing" if all(check[3] for check in checks) else "failing",
        measurement=threshold.measurement,
        value=value,
        operator=threshold.operator,
        threshold=threshold.value,
        dataset=name,
        message="; ".join(_describe(*check) for check in checks),
    )


def _describe(threshold: Threshold, dataset: str, value: float, holds: bool) -> str:
    verdict = "holds" if holds else "does not hold"
    return (
        f"{threshold.measurement} {threshold.operator} {threshold.value:g} {verdict} on "
        f"{dataset!r}: measured {value:.6g}"
    )


def _error(goal: Goal, threshold: Threshold, dataset: str, reason: str) -> GoalResult:
    return GoalResult(
        name=goal.name,
        status="error",
        measurement=threshold.measurement,
        value=None,
        operator=threshold.operator,
        threshold=threshold.value,
        dataset=dataset,
        message=f"goal {goal.name!r} could not be measured: {reason}",
    )


#: Variables a pushed script never sees: the server's token, database and store credentials.
_SECRET_PREFIXES = ("ENSIGN_", "AWS_", "AZURE_", "GOOGLE_", "GCS_", "PG", "OPENLAYER_")


def script_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """Return the environment a ``batchCommand`` runs with: the server's, less its secrets.

    Pushed code is somebody else's code: it keeps ``PATH``, ``HOME``, locale and the
    like, but not ``ENSIGN_*`` (tokens, tracking URIs), cloud credentials (``AWS_*``,
    ``AZURE_*``, ``GOOGLE_*``, ``GCS_*``), PostgreSQL settings (``PG*``) or
    ``OPENLAYER_*``.
    """
    return {k: v for k, v in environment.items() if not k.upper().startswith(_SECRET_PREFIXES)}


def _run_batch_command(command: str, root: Path, time_limit: float) -> str | None:
    """Run a ``full`` model's command; return why it failed, or ``None`` when it succeeded.

    The command runs through the shell in ``root``, with no stdin, in a new session (its own
    process group). Its output goes to temporary files, so a chatty command cannot fill
    memory and a background child holding the output open cannot stall the wait. When it
    ends, or when ``time_limit`` passes, the whole group is killed with ``SIGKILL``.
    The command does not see the server's secrets: see :func:`script_environment`.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            command,
            shell=True,
            cwd=root,
            env=script_environment(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        code: int | None = None
        try:
            code = process.wait(timeout=time_limit)
        except subprocess.TimeoutExpired:
            pass
        finally:
            _kill_group(process.pid)
            process.wait()
        if code is None:
            return (
                f"batchCommand {command!r} was killed after {time_limit:g} seconds (the time limit)"
            )
        if code == 0:
            return None
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        tail = _tail(err)
        return f"batchCommand {command!r} {how}" + (f"; stderr ends with:\n{tail}" if tail else "")


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, signal.SIGKILL)


def _tail(stream: IO[bytes]) -> str:
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - _STDERR_TAIL_BYTES))
    text = stream.read().decode("utf-8", errors="replace")
    return "\n".join(text.strip().splitlines()[-_STDERR_TAIL_LINES:])


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
