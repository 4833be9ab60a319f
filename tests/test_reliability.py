"""Reliability: concurrent promoters get distinct versions; a killed promotion leaves no trace.

Both tests run real processes: several promoters released at the same moment on one
tracking store (SQLite and PostgreSQL), and promoters killed with SIGKILL at chosen
moments of a promotion (mid-upload, before and after publishing a blob, inside and
after the database commit) and after a few delays.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ensign import tracking
from ensign.backend import open_backend
from ensign.client import ProjectClient, RunClient

SCRIPTS = Path(__file__).parent / "scripts"
WORKERS = 8
MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_for(path: Path, procs: list[subprocess.Popen[str]], limit: float = 120.0) -> None:
    """Wait until ``path`` exists; fail early if a process died first."""
    deadline = time.monotonic() + limit
    while not path.exists():
        for proc in procs:
            if proc.poll() is not None and proc.returncode != 0:
                _out, err = proc.communicate()
                pytest.fail(f"a worker exited with {proc.returncode} before {path.name}:\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} never appeared")
        time.sleep(0.005)


# concurrent promoters --------------------------------------------------------------------


def start(args: list[str], stack: contextlib.ExitStack) -> subprocess.Popen[str]:
    """Start a script; the stack kills it if still running and closes its pipes."""
    proc = stack.enter_context(
        subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    )
    stack.callback(lambda: proc.poll() is None and proc.kill())
    return proc


def promote_at_once(tracking_uri: str, artifacts_uri: str | None, sync: Path) -> list[str]:
    sync.mkdir()
    script = str(SCRIPTS / "promote_worker.py")
    with contextlib.ExitStack() as stack:
        procs = [
            start([script, tracking_uri, artifacts_uri or "-", str(sync), str(i)], stack)
            for i in range(WORKERS)
        ]
        for index in range(WORKERS):
            wait_for(sync / f"ready-{index}", procs)
        (sync / "go").touch()  # every worker is past init and upload: they promote together
        results = [proc.communicate(timeout=120) for proc in procs]
    failures = [err for proc, (_, err) in zip(procs, results, strict=True) if proc.returncode != 0]
    assert failures == []
    return [out.strip() for out, _ in results]


def check_versions(tracking_uri: str, sync: Path, tmp_path: Path) -> None:
    with ProjectClient("race", tracking_uri=tracking_uri) as pc:
        versions = pc.list_artifact_versions(limit=100)
        assert sorted(v.name for v in versions) == sorted(f"v{n}" for n in range(1, WORKERS + 1))
        by_worker = {}
        for version in versions:
            with RunClient(version.run or "", tracking_uri=tracking_uri) as rc:
                run = rc.get_run()
                decisions = rc.get_promotions()
            assert run.is_promoted
            assert run.status == "succeeded"
            assert [(d.promoted, d.version) for d in decisions] == [(True, version.name)]
            by_worker[run.name] = version
        assert sorted(by_worker) == sorted(f"worker-{i}" for i in range(WORKERS))
        for index in range(WORKERS):
            version = by_worker[f"worker-{index}"]
            expected = (sync / f"data-{index}.bin").read_bytes()
            assert version.manifest == {
                f"data/data-{index}.bin": {"digest": sha(expected), "size": len(expected)}
            }
            target = pc.pull_artifact_version(version.name, tmp_path / "pulled" / version.name)
            assert (target / "data" / f"data-{index}.bin").read_bytes() == expected


@pytest.mark.slow
def test_concurrent_promoters_on_sqlite_get_distinct_versions(tmp_path: Path) -> None:
    tracking_uri = str(tmp_path / "shared-tracking")
    names = promote_at_once(tracking_uri, None, tmp_path / "sync")
    assert sorted(names) == sorted(f"v{n}" for n in range(1, WORKERS + 1))
    check_versions(tracking_uri, tmp_path / "sync", tmp_path)


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrent_promoters_on_postgres_get_distinct_versions(
    tmp_path: Path, postgres_url: str
) -> None:
    artifacts = (tmp_path / "shared-artifacts").as_uri()
    names = promote_at_once(postgres_url, artifacts, tmp_path / "sync")
    assert sorted(names) == sorted(f"v{n}" for n in range(1, WORKERS + 1))
    check_versions(postgres_url, tmp_path / "sync", tmp_path)


# killed promoters ------------------------------------------------------------------------


@dataclass
class Attempt:
    kill_point: str
    delay: float | None  # seconds after "started" for the kills from outside
    data: Path
    digest: str
    proc: subprocess.Popen[str] | None = None
    marker: Path | None = None
    run: str = ""


# where a promotion is killed, and whether its version must then exist
KILL_POINTS = {
    "upload": False,
    "publish": False,
    "published": False,
    "commit": False,
    "committed": True,
}
DELAYS = [0.0, 0.1, 0.3]


@pytest.mark.slow
def test_a_killed_promotion_leaves_no_half_version(tmp_path: Path) -> None:
    tracking_dir = tmp_path / "tracking"
    attempts: list[Attempt] = []
    plans = [(point, None) for point in KILL_POINTS] + [("none", d) for d in DELAYS]
    for number, (point, delay) in enumerate(plans):
        size = 50 * MiB if point in ("upload", "none") else 2 * MiB
        data = os.urandom(size)
        path = tmp_path / f"model-{number}.bin"
        path.write_bytes(data)
        attempts.append(Attempt(point, delay, path, sha(data)))
    # one store, created before the crashes so that every attempt opens an existing one
    open_backend(tracking_dir).close()

    with contextlib.ExitStack() as stack:
        for number, attempt in enumerate(attempts):
            attempt.marker = tmp_path / f"marker-{number}"
            attempt.marker.mkdir()
            script = str(SCRIPTS / "promote_and_die.py")
            args = [str(tracking_dir), str(attempt.data), attempt.kill_point, str(attempt.marker)]
            attempt.proc = start([script, *args], stack)
        for attempt in attempts:
            if attempt.delay is None:
                continue
            assert attempt.marker is not None
            assert attempt.proc is not None
            wait_for(attempt.marker / "started", [attempt.proc])
            time.sleep(attempt.delay)
            attempt.proc.send_signal(signal.SIGKILL)
        for attempt in attempts:
            assert attempt.proc is not None
            out, err = attempt.proc.communicate(timeout=120)
            attempt.run = out.split()[0] if out.split() else ""
            assert attempt.run, err
            if attempt.delay is None:  # killed itself at its kill point
                assert attempt.proc.returncode == -signal.SIGKILL, (attempt.kill_point, err)
            else:  # killed from outside, or done before the kill came
                assert attempt.proc.returncode in (0, -signal.SIGKILL), err

    backend = open_backend(tracking_dir)
    store = backend.store
    store_root = Path(store.root)
    try:
        with ProjectClient("crash", tracking_uri=tracking_dir) as pc:
            # no visible half version: every listed version is whole and pulls verified
            versions = pc.list_model_versions(limit=100)
            for version in versions:
                assert version.manifest
                assert store.missing(e["digest"] for e in version.manifest.values()) == set()
                pc.pull_model_version(version.name, tmp_path / "pulled" / version.name)
            producers = {v.run for v in versions}
            for attempt in attempts:
                if attempt.kill_point in KILL_POINTS:
                    assert (attempt.run in producers) is KILL_POINTS[attempt.kill_point], (
                        attempt.kill_point
                    )
                with RunClient(attempt.run, tracking_uri=tracking_dir) as rc:
                    run = rc.get_run()  # the store stays readable
                    assert run.is_promoted is (attempt.run in producers)
                    assert rc.get_metrics()["acc"][0].value == 0.9

            # the crashes left temporary objects and an unreferenced blob behind
            leftovers = list((store_root / "tmp").iterdir())
            assert leftovers, "the upload and publish kills leave a temporary object"
            orphan = next(a.digest for a in attempts if a.kill_point == "published")
            assert store.has(orphan)
            assert orphan not in backend.registry.referenced_digests()

            # the store takes new promotions after the crashes
            with tracking.init(project="crash", tracking_uri=tracking_dir):
                tracking.log_model_ref(attempts[0].data, name="model")
                after = tracking.promote_to_model_version()
            assert after is not None
            assert after.name not in {v.name for v in versions}

            report = store.collect_garbage(backend.registry.referenced_digests(), grace_seconds=0)
            assert not (store_root / "tmp").exists() or list((store_root / "tmp").iterdir()) == []
            assert len(report.temporary) == len(leftovers)
            assert orphan in report.blobs
            assert not store.has(orphan)
            referenced = backend.registry.referenced_digests()
            assert store.missing(referenced) == set()
            for version in pc.list_model_versions(limit=100):  # still whole after gc
                pc.pull_model_version(version.name, tmp_path / "after-gc" / version.name)
    finally:
        backend.close()
