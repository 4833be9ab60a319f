"""The fast metric path: log_metrics at the caller, the background writer, the bulk insert.

Behaviour only (no timings): what a user logs is what comes back, whatever the batch size,
the order of steps or the database; a refused call leaves nothing behind.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from ensign import tracking
from ensign.client import RunClient
from ensign.errors import InvalidMetric
from ensign.registry import RunBatch
from ensign.registry.sql import SqlRegistry
from ensign.tracking.writer import BackgroundWriter


@pytest.fixture(autouse=True)
def _no_run_left_open() -> Iterator[None]:
    yield
    run = tracking.get_run()
    if run is not None and not run.ended:
        run.end()


@pytest.fixture
def registry(database_url: str) -> Iterator[SqlRegistry]:
    reg = SqlRegistry(database_url)
    try:
        yield reg
    finally:
        reg.close()


def history(uuid: str, tracking_uri: str | Path) -> dict[str, list[tuple[int, float]]]:
    with RunClient(uuid, tracking_uri=tracking_uri) as rc:
        return {k: [(p.step, p.value) for p in v] for k, v in rc.get_metrics().items()}


# --- the bulk insert ------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 4095, 4096, 4097, 3 * 4096 + 4095, 65537])
def test_every_point_of_a_large_batch_round_trips(registry: SqlRegistry, count: int) -> None:
    # Sizes around the rows per statement: 4096 on SQLite (full statements, then
    # power-of-two statements for the rest), 65536 on PostgreSQL.
    run = registry.create_run("digits").uuid
    points = []
    for i in range(count):
        value = math.nan if i % 997 == 5 else (math.inf if i % 1009 == 7 else i / 7)
        points.append((("loss", "acc", "lr")[i % 3], i // 3, value, 1_700_000_000.0 + i))
    registry.write_batch(RunBatch(run, metrics=points))
    found = registry.get_metrics(run)
    assert sum(len(v) for v in found.values()) == count
    back = sorted(
        (key, p.step, p.timestamp, "nan" if math.isnan(p.value) else p.value)
        for key, series in found.items()
        for p in series
    )
    expected = sorted((k, s, t, "nan" if math.isnan(v) else v) for k, s, v, t in points)
    assert back == expected
    assert registry.last_steps(run) == {
        key: max(s for k, s, _, _ in points if k == key) for key in {p[0] for p in points}
    }


# --- the background writer ------------------------------------------------------------


def write(writer: BackgroundWriter, points: list[tuple[str, int | None, float]]) -> None:
    for key, step, value in points:
        writer.metrics.append((key, step, value, 0.0))
    writer.flush()


def test_a_step_less_point_follows_the_highest_step_not_the_last(tmp_path: Path) -> None:
    with tracking.init(project="p", tracking_uri=tmp_path / "t") as run:
        tracking.log_metrics(step=10, loss=1.0)
        tracking.log_metrics(step=3, loss=2.0)  # steps may go back
        tracking.log_metric("loss", 3.0)
        run.flush()  # and across batches
        tracking.log_metric("loss", 4.0, step=20)
        tracking.log_metric("loss", 5.0, step=2)
        run.flush()
        tracking.log_metric("loss", 6.0)
    assert history(run.uuid, tmp_path / "t")["loss"] == [
        (2, 5.0),
        (3, 2.0),
        (10, 1.0),
        (11, 3.0),
        (20, 4.0),
        (21, 6.0),
    ]


def test_step_less_and_stepped_metrics_in_one_batch(tmp_path: Path) -> None:
    with tracking.init(project="p", tracking_uri=tmp_path / "t") as run:
        for i in range(5):
            tracking.log_metrics(step=i, loss=1.0 / (i + 1), acc=i / 10)
        tracking.log_metric("lr", 0.1)  # a lone step-less point among stepped ones
        tracking.log_metric("acc", 0.9)  # follows acc's highest step, 4
        tracking.log_metric("lr", 0.05)
    found = history(run.uuid, tmp_path / "t")
    assert found["lr"] == [(0, 0.1), (1, 0.05)]
    assert found["acc"][-1] == (5, 0.9)
    assert [s for s, _ in found["loss"]] == [0, 1, 2, 3, 4]


def test_the_writer_keeps_each_metrics_logging_order(registry: SqlRegistry) -> None:
    run = registry.create_run("digits").uuid
    # Interleaved metrics, one step logged twice: the writer groups rows by metric for the
    # index but must keep every metric's points in the order they were logged.
    writer = BackgroundWriter(registry, run, interval=3600.0)
    try:
        write(writer, [("b", 0, 1.0), ("a", 0, 2.0), ("b", 0, 3.0), ("a", 1, 4.0)])
        write(writer, [("b", None, 5.0), ("a", None, 6.0)])
    finally:
        writer.close()
    found = registry.get_metrics(run)
    assert [(p.step, p.value) for p in found["a"]] == [(0, 2.0), (1, 4.0), (2, 6.0)]
    assert sorted((p.step, p.value) for p in found["b"]) == [(0, 1.0), (0, 3.0), (1, 5.0)]


# --- the caller -----------------------------------------------------------------------


def test_a_refused_value_refuses_the_whole_call(tmp_path: Path) -> None:
    with tracking.init(project="p", tracking_uri=tmp_path / "t") as run:
        tracking.log_metrics(step=0, loss=0.5, acc=0.1)
        with pytest.raises(InvalidMetric, match=r"metric 'acc' must be a number, not str"):
            tracking.log_metrics(step=1, loss=0.4, acc="high")  # type: ignore[arg-type]
        with pytest.raises(InvalidMetric, match=r"metric 'loss' must be a number, not list"):
            run.log_metrics(step=1, acc=0.2, loss=[0.4])  # type: ignore[arg-type]
    assert history(run.uuid, tmp_path / "t") == {"loss": [(0, 0.5)], "acc": [(0, 0.1)]}


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("3", "a step must be an integer, not str"),
        (1.5, "a step must be an integer, not float"),
        ([1], "a step must be an integer, not list"),
        (2**63, "a step must fit in 64 bits"),
        (-(2**63) - 1, "a step must fit in 64 bits"),
    ],
)
def test_a_bad_step_is_refused(tmp_path: Path, step: object, message: str) -> None:
    with tracking.init(project="p", tracking_uri=tmp_path / "t") as run:
        with pytest.raises(InvalidMetric, match=message):
            tracking.log_metrics(step=step, loss=0.5)  # type: ignore[arg-type]
        with pytest.raises(InvalidMetric, match=message):
            tracking.log_metric("loss", 0.5, step=step)  # type: ignore[arg-type]
        tracking.log_metrics(step=2**63 - 1, loss=0.25)  # the largest step there is
    assert history(run.uuid, tmp_path / "t") == {"loss": [(2**63 - 1, 0.25)]}


@pytest.mark.parametrize(
    ("timestamp", "message"),
    [
        ("noon", "a timestamp must be a number of seconds, not str"),
        (math.nan, "a timestamp must be finite, not nan"),
        (math.inf, "a timestamp must be finite, not inf"),
    ],
)
def test_a_bad_timestamp_is_refused(tmp_path: Path, timestamp: object, message: str) -> None:
    with tracking.init(project="p", tracking_uri=tmp_path / "t") as run:
        with pytest.raises(InvalidMetric, match=message):
            tracking.log_metrics(step=0, timestamp=timestamp, loss=0.5)  # type: ignore[arg-type]
        with pytest.raises(InvalidMetric, match=message):
            tracking.log_metric("loss", 0.5, timestamp=timestamp)  # type: ignore[arg-type]
        tracking.log_metrics(step=1, timestamp=12, loss=0.25)  # an int is a fine timestamp
    with RunClient(run.uuid, tracking_uri=tmp_path / "t") as rc:
        points = rc.get_metrics()["loss"]
    assert [(p.step, p.value, p.timestamp) for p in points] == [(1, 0.25, 12.0)]


def test_integer_like_steps_and_number_like_values_are_accepted(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    with tracking.init(project="p", tracking_uri=tmp_path / "t") as run:
        tracking.log_metrics(step=np.int64(7), loss=np.float32(0.5), acc=True)
    assert history(run.uuid, tmp_path / "t") == {"loss": [(7, 0.5)], "acc": [(7, 1.0)]}


@pytest.mark.parametrize("name", ["", "a\nb", "x" * 251])
def test_log_metrics_checks_names_too(tmp_path: Path, name: str) -> None:
    with tracking.init(project="p", tracking_uri=tmp_path / "t") as run:
        with pytest.raises(InvalidMetric, match="invalid metric name"):
            tracking.log_metrics(step=0, **{"ok": 1.0, name: 1.0})
        with pytest.raises(InvalidMetric, match="invalid metric name"):
            tracking.log_metric(7, 1.0)  # type: ignore[arg-type]
    assert history(run.uuid, tmp_path / "t") == {}
