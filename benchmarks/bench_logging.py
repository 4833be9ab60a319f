"""Metric logging: ensign next to MLflow's asynchronous logging, measured in the same run.

Both libraries log ``log_metrics(step=i, loss=..., acc=...)`` (two points a call) through
their module-level API into a local SQLite database in a temporary folder:

* caller: wall time of the logging loop divided by the number of calls (µs per call), the
  time a training loop loses to logging;
* end to end: points per second from the first call until ``flush`` returns, that is until
  every point is in the database;
* writer (ensign only): the background writer's own throughput, one ``flush`` of points
  already queued.

Every measurement runs in a fresh Python process (so that one library's threads, imports
and garbage never weigh on the other), ``--repeat`` times, alternating the libraries; the
medians are reported. Run ``python benchmarks/bench_logging.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

TARGET_CALLER_US = 2.0
TARGET_POINTS_PER_S = 500_000


@dataclass
class Figures:
    caller_us: list[float] = field(default_factory=list)
    end_to_end: list[float] = field(default_factory=list)
    writer: list[float] = field(default_factory=list)
    thread_cpu_us: list[float] = field(default_factory=list)
    process_cpu_us: list[float] = field(default_factory=list)


def series(calls: int) -> tuple[list[float], list[float]]:
    """Loss and accuracy curves, computed before any clock starts."""
    losses = [1.0 / (i + 1) for i in range(calls)]
    accs = [1.0 - 1.0 / (i + 2) for i in range(calls)]
    return losses, accs


# --- ensign ---------------------------------------------------------------------------


def ensign_logging(folder: Path, calls: int) -> dict[str, float]:
    from ensign import tracking

    losses, accs = series(calls)
    run = tracking.init(project="bench-logging", tracking_uri=folder)
    run.flush()  # the environment capture of init() is done before the clock starts
    log_metrics = tracking.log_metrics
    cpu, thread_cpu = time.process_time(), time.thread_time()
    start = time.perf_counter()
    for i in range(calls):
        log_metrics(step=i, loss=losses[i], acc=accs[i])
    logged = time.perf_counter()
    cpu, thread_cpu = time.process_time() - cpu, time.thread_time() - thread_cpu
    run.flush()
    done = time.perf_counter()
    last = run.backend.registry.last_steps(run.uuid)
    tracking.end()
    if last != {"loss": calls - 1, "acc": calls - 1}:
        raise SystemExit(f"ensign stored the wrong steps: {last}")
    return loop_figures(calls, start, logged, done, cpu, thread_cpu)


def loop_figures(
    calls: int, start: float, logged: float, done: float, cpu: float, thread_cpu: float
) -> dict[str, float]:
    return {
        "caller_us": (logged - start) / calls * 1e6,
        "end_to_end": 2 * calls / (done - start),
        "thread_cpu_us": thread_cpu / calls * 1e6,
        "process_cpu_us": cpu / calls * 1e6,
    }


def ensign_writer(folder: Path, calls: int) -> dict[str, float]:
    """Queue ``2 * calls`` points as ``log_metrics`` does, then time one flush."""
    from ensign import tracking
    from ensign.tracking.writer import BackgroundWriter

    losses, accs = series(calls)
    run = tracking.init(project="bench-writer", tracking_uri=folder)
    run.flush()
    writer = BackgroundWriter(run.backend.registry, run.uuid, interval=3600.0)
    append = writer.metrics.append
    now = time.time()
    for i in range(calls):
        append(("loss", i, losses[i], now))
        append(("acc", i, accs[i], now))
    start = time.perf_counter()
    writer.flush()
    done = time.perf_counter()
    writer.close()
    last = run.backend.registry.last_steps(run.uuid)
    tracking.end()
    if last != {"loss": calls - 1, "acc": calls - 1}:
        raise SystemExit(f"ensign's writer stored the wrong steps: {last}")
    return {"writer": 2 * calls / (done - start)}


# --- MLflow ---------------------------------------------------------------------------


def mlflow_setup(folder: Path) -> str:
    os.environ["MLFLOW_ENABLE_ASYNC_LOGGING"] = "true"
    import mlflow

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    return mlflow.create_experiment(
        "bench-logging", artifact_location=(folder / "mlartifacts").as_uri()
    )


def mlflow_logging(folder: Path, calls: int) -> dict[str, float]:
    experiment = mlflow_setup(folder)
    import mlflow
    from mlflow.tracking import MlflowClient

    losses, accs = series(calls)
    with mlflow.start_run(experiment_id=experiment) as active:
        log_metrics = mlflow.log_metrics
        cpu, thread_cpu = time.process_time(), time.thread_time()
        start = time.perf_counter()
        for i in range(calls):
            log_metrics({"loss": losses[i], "acc": accs[i]}, step=i, synchronous=False)
        logged = time.perf_counter()
        cpu, thread_cpu = time.process_time() - cpu, time.thread_time() - thread_cpu
        mlflow.flush_async_logging()
        done = time.perf_counter()
        stored = len(MlflowClient().get_metric_history(active.info.run_id, "acc"))
    if stored != calls:
        raise SystemExit(f"MLflow stored {stored} points of 'acc', not {calls}")
    return loop_figures(calls, start, logged, done, cpu, thread_cpu)


# --- report ---------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(value: float, unit: str) -> str:
    if value != value:  # NaN: not measured
        return "n/a"
    if unit == "us":
        return f"{value:,.2f} µs" if value < 100 else f"{value:,.0f} µs"
    return f"{value:,.0f} pt/s"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def report(ours: Figures, theirs: Figures, args: argparse.Namespace) -> str:
    def better(ours_value: float, theirs_value: float, lower_is_better: bool) -> str:
        if ours_value != ours_value or theirs_value != theirs_value:
            return "n/a"
        times = theirs_value / ours_value if lower_is_better else ours_value / theirs_value
        return f"{times:,.0f}x better" if times >= 10 else f"{times:.2f}x"

    caller, their_caller = median(ours.caller_us), median(theirs.caller_us)
    e2e, their_e2e = median(ours.end_to_end), median(theirs.end_to_end)
    writer = median(ours.writer)
    rows = [
        ["figure", "ensign", "mlflow (async)", "ensign vs mlflow", "target", "result"],
        [
            "log_metrics at the caller",
            fmt(caller, "us"),
            fmt(their_caller, "us"),
            better(caller, their_caller, lower_is_better=True),
            f"<= {TARGET_CALLER_US:g} µs",
            "PASS" if caller <= TARGET_CALLER_US else "FAIL",
        ],
        [
            "end to end, first log to flush",
            fmt(e2e, "rate"),
            fmt(their_e2e, "rate"),
            better(e2e, their_e2e, lower_is_better=False),
            f">= {TARGET_POINTS_PER_S:,} pt/s",
            "PASS" if e2e >= TARGET_POINTS_PER_S else "FAIL",
        ],
        [
            "background writer alone",
            fmt(writer, "rate"),
            "n/a",
            "n/a",
            f">= {TARGET_POINTS_PER_S:,} pt/s",
            "PASS" if writer >= TARGET_POINTS_PER_S else "FAIL",
        ],
    ]
    lines = [
        table(rows),
        "",
        f"medians of {args.repeat} repetitions for ensign, {args.mlflow_repeat} for MLflow, each "
        f"in a fresh process; ensign {args.calls:,} calls ({2 * args.calls:,} points) a "
        f"repetition, MLflow {args.mlflow_calls:,} calls",
        "CPU time during the logging loop, per call (medians): ensign "
        f"{median(ours.thread_cpu_us):.2f} µs in the calling thread, "
        f"{median(ours.process_cpu_us):.2f} µs in the whole process (writer included); "
        f"MLflow {median(theirs.thread_cpu_us):,.0f} µs and "
        f"{median(theirs.process_cpu_us):,.0f} µs",
        "every repetition:",
        "  ensign caller µs      " + " ".join(f"{v:.2f}" for v in ours.caller_us),
        "  ensign end to end     " + " ".join(f"{v:,.0f}" for v in ours.end_to_end),
        "  ensign writer alone   " + " ".join(f"{v:,.0f}" for v in ours.writer),
        "  MLflow caller µs      " + " ".join(f"{v:,.0f}" for v in theirs.caller_us),
        "  MLflow end to end     " + " ".join(f"{v:,.1f}" for v in theirs.end_to_end),
    ]
    return "\n".join(lines)


def machine() -> str:
    import ensign

    try:
        import mlflow

        mlflow_version = mlflow.__version__
    except ImportError:
        mlflow_version = "not installed"
    return (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.platform()}; "
        f"{os.cpu_count()} CPUs; Python {platform.python_version()}; "
        f"SQLite {sqlite3.sqlite_version}; ensign {ensign.__version__}; mlflow {mlflow_version}"
    )


WORKERS: dict[str, Callable[[Path, int], dict[str, float]]] = {
    "ensign": ensign_logging,
    "writer": ensign_writer,
    "mlflow": mlflow_logging,
}


def measure(worker: str, folder: Path, calls: int) -> dict[str, float]:
    """Run one measurement in a fresh interpreter and return its figures."""
    done = subprocess.run(
        [sys.executable, __file__, "--worker", worker, "--calls", str(calls), "--dir", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the {worker} measurement failed:\n{done.stderr}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--calls", type=int, default=500_000, help="ensign log_metrics calls a repetition"
    )
    parser.add_argument(
        "--mlflow-calls",
        type=int,
        default=1_000,
        help="MLflow log_metrics calls a repetition (about 1 ms each, and a slow flush)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of ensign's figures")
    parser.add_argument(
        "--mlflow-repeat", type=int, default=3, help="repetitions of MLflow's figures"
    )
    parser.add_argument("--skip-mlflow", action="store_true", help="measure ensign only")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary folder goes")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.calls, args.mlflow_calls, args.repeat, args.mlflow_repeat) < 1:
        parser.error("--calls, --mlflow-calls and the repetitions must be at least 1")
    warnings.filterwarnings("ignore")
    if args.worker is not None:  # one measurement, in this fresh process
        print(json.dumps(WORKERS[args.worker](args.dir, args.calls)))
        return 0
    print(machine(), flush=True)
    ours, theirs = Figures(), Figures()
    with tempfile.TemporaryDirectory(prefix="ensign-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        for n in range(max(args.repeat, 0 if args.skip_mlflow else args.mlflow_repeat)):
            plan = []
            if n < args.repeat:
                plan += [("ensign", args.calls), ("writer", args.calls)]
            if not args.skip_mlflow and n < args.mlflow_repeat:
                plan.append(("mlflow", args.mlflow_calls))
            for worker, calls in plan if n % 2 == 0 else plan[::-1]:
                print(f"  repetition {n + 1}: {worker}", file=sys.stderr, flush=True)
                figures = measure(worker, root / f"{worker}-{n}", calls)
                target = theirs if worker == "mlflow" else ours
                for name, value in figures.items():
                    getattr(target, name).append(value)
    print(report(ours, theirs, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
