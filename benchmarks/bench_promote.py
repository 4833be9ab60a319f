"""Promoting a large file: ensign next to MLflow's ``log_artifact`` and a plain file copy.

All three work on the same file on the same disk (a temporary folder, ``--dir``):

* plain copy: ``shutil.copyfile`` of the file (the floor: any store must copy the bytes);
* ensign: ``run.log_artifact_ref(path)`` then ``run.promote_to_artifact_version()`` in a
  fresh tracking folder: the file is copied into the content-addressed store while it is
  hashed, then a version ``v1`` is registered;
* ensign again: the same two calls in a new run of the same tracking folder, the file
  unchanged: the stat cache knows its digest and the store holds it, so no byte moves;
* MLflow: ``mlflow.log_artifact(path)`` in a run of a SQLite-backed tracking store with
  a local artifact folder; and again in a second run (MLflow copies the bytes again).

Each repetition measures every method once, in a rotating order, after ``os.sync()`` so
that writing back an earlier copy does not slow a later one. The file stays in the page
cache (warm) unless ``--cold`` is given, which evicts it before each measurement. The
table shows medians; the ratios are medians of the per-repetition ratios to the copy.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

TARGET_RATIO = 1.3
TARGET_AGAIN_S = 0.050
_PIECE = 64 * 2**20
_PAUSE_S = 0.5


def make_file(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        left = size
        while left:
            piece = min(left, _PIECE)
            handle.write(os.urandom(piece))
            left -= piece


def settle(path: Path, cold: bool) -> None:
    """Let the disk settle before a measurement; with ``cold``, drop ``path`` from the cache.

    Dirty pages are written back first, so that an earlier copy's writeback does not slow
    this one, and a short pause follows: on the virtual disks we measured on, how fast a
    large write goes depends on what the file system did just before, and every method
    should find it in the same state.
    """
    os.sync()
    time.sleep(_PAUSE_S)
    if cold:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def plain_copy(source: Path, work: Path) -> float:
    target = work / "copy.bin"
    start = time.perf_counter()
    shutil.copyfile(source, target)
    elapsed = time.perf_counter() - start
    target.unlink()
    return elapsed


def sha256_alone(source: Path) -> float:
    """Time of hashing the file on one thread: the floor of any content-addressed store."""
    start = time.perf_counter()
    digest = hashlib.sha256()
    buffer = bytearray(8 * 2**20)
    view = memoryview(buffer)
    with open(source, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            digest.update(view[:count])
    return time.perf_counter() - start


def ensign_promote(source: Path, work: Path, cold: bool) -> tuple[float, float]:
    """Return the time of the first promotion and of the second, unchanged one."""
    from ensign import tracking

    folder = work / "ensign"
    times = []
    digests = []
    for attempt in range(2):
        run = tracking.init(project="bench-promote", tracking_uri=folder)
        run.flush()  # the environment capture of init() is done before the clock starts
        settle(source, cold)
        start = time.perf_counter()
        run.log_artifact_ref(source, name="model.bin")
        version = run.promote_to_artifact_version()
        times.append(time.perf_counter() - start)
        tracking.end()
        if version is None or version.name != f"v{attempt + 1}":
            raise SystemExit(f"ensign did not promote as expected: {version}")
        digests.extend(entry["digest"] for entry in version.manifest.values())
    blobs = [p for p in (folder / "artifacts").rglob("*") if p.is_file() and "blobs" in p.parts]
    if digests[0] != digests[1] or len(blobs) != 1:
        raise SystemExit(f"ensign stored {len(blobs)} blobs for one file: {digests}")
    shutil.rmtree(folder)
    return times[0], times[1]


def mlflow_setup(work: Path) -> str:
    import mlflow

    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    return mlflow.create_experiment(
        "bench-promote", artifact_location=(work / "mlartifacts").as_uri()
    )


def mlflow_log_artifact(
    source: Path, work: Path, experiment: str, cold: bool
) -> tuple[float, float]:
    import mlflow

    times = []
    for _ in range(2):
        with mlflow.start_run(experiment_id=experiment):
            settle(source, cold)
            start = time.perf_counter()
            mlflow.log_artifact(str(source))
            times.append(time.perf_counter() - start)
        # Every measured write follows the removal of the previous one's output (as the
        # plain copy's and ensign's do).
        shutil.rmtree(work / "mlartifacts")
    return times[0], times[1]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the file (MiB)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of every figure")
    parser.add_argument("--cold", action="store_true", help="evict the file from the page cache")
    parser.add_argument("--skip-mlflow", action="store_true", help="measure ensign only")
    parser.add_argument(
        "--dir", type=Path, default=None, help="folder on the disk to measure (default: temp)"
    )
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.repeat < 1:
        parser.error("--size-mib and --repeat must be at least 1")
    warnings.filterwarnings("ignore")
    import ensign

    mlflow_version = "skipped"
    if not args.skip_mlflow:
        import mlflow

        mlflow_version = mlflow.__version__
    print(
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.platform()}; "
        f"{os.cpu_count()} CPUs; Python {platform.python_version()}; "
        f"ensign {ensign.__version__}; mlflow {mlflow_version}; "
        f"{args.size_mib} MiB, {'cold' if args.cold else 'warm'} page cache",
        flush=True,
    )
    copy: list[float] = []
    hashing: list[float] = []
    ours: list[float] = []
    ours_again: list[float] = []
    theirs: list[float] = []
    theirs_again: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ensign-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        source = work / "model.bin"
        make_file(source, args.size_mib * 2**20)
        plain_copy(source, work)  # warm-up: the first large write of a run is often slow
        experiment = None if args.skip_mlflow else mlflow_setup(work)

        def run_copy() -> None:
            settle(source, args.cold)
            hashing.append(sha256_alone(source))
            settle(source, args.cold)
            copy.append(plain_copy(source, work))

        def run_ensign() -> None:
            first, again = ensign_promote(source, work, args.cold)
            ours.append(first)
            ours_again.append(again)

        def run_mlflow() -> None:
            assert experiment is not None
            first, again = mlflow_log_artifact(source, work, experiment, args.cold)
            theirs.append(first)
            theirs_again.append(again)

        methods: list[tuple[str, Callable[[], None]]] = [
            ("plain copy", run_copy),
            ("ensign", run_ensign),
        ]
        if experiment is not None:
            methods.append(("mlflow", run_mlflow))
        for n in range(args.repeat):
            shift = n % len(methods)
            for label, method in methods[shift:] + methods[:shift]:
                print(f"  repetition {n + 1}/{args.repeat}: {label}", file=sys.stderr, flush=True)
                method()

    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    def ratio(values: list[float]) -> float:
        return med([v / c for v, c in zip(values, copy, strict=False)]) if values else float("nan")

    def show(value: float, unit: str = "") -> str:
        if value != value:
            return "n/a"
        return f"{value:.2f}x" if unit == "x" else seconds(value)

    ours_ratio, theirs_ratio = ratio(ours), ratio(theirs)
    rows = [
        [
            "figure",
            "ensign",
            "mlflow",
            "plain copy",
            "ensign/copy",
            "mlflow/copy",
            "target",
            "result",
        ],
        [
            f"promote a {args.size_mib} MiB file",
            show(med(ours)),
            show(med(theirs)),
            show(med(copy)),
            show(ours_ratio, "x"),
            show(theirs_ratio, "x"),
            f"<= {TARGET_RATIO:g}x copy",
            "PASS" if ours_ratio <= TARGET_RATIO else "FAIL",
        ],
        [
            "promote it again, unchanged",
            show(med(ours_again)),
            show(med(theirs_again)),
            "n/a",
            show(ratio(ours_again), "x"),
            show(ratio(theirs_again), "x"),
            f"<= {TARGET_AGAIN_S * 1000:g} ms",
            "PASS" if med(ours_again) <= TARGET_AGAIN_S else "FAIL",
        ],
        [
            "reference: sha256 of the file, one thread",
            show(med(hashing)),
            "",
            show(med(copy)),
            show(ratio(hashing), "x"),
            "",
            "",
            "",
        ],
    ]
    print(table(rows))
    print()
    print(f"medians of {args.repeat} repetitions; every repetition (seconds):")
    for label, values in (
        ("plain copy", copy),
        ("sha256 alone", hashing),
        ("ensign", ours),
        ("ensign again", ours_again),
        ("mlflow", theirs),
        ("mlflow again", theirs_again),
    ):
        if values:
            print(f"  {label:<13} " + " ".join(f"{v:.3f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
