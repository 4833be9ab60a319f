"""The job queue on SQLite and PostgreSQL, and workers that die mid-job."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from bundle_helpers import make_tar
from ensign.backend import open_backend
from ensign.registry.sql import SqlRegistry
from ensign.registry.sql import jobs as job_ops
from ensign.registry.sql.engine import write_transaction
from ensign.registry.sql.schema import jobs as jobs_table
from push_helpers import commit, create_project, upload, wait_version, write_tiny_bundle
from serving import ensign_command, start_server


def _registry(url: str) -> SqlRegistry:
    return SqlRegistry(url)


def _enqueue(registry: SqlRegistry, count: int = 1) -> list[str]:
    with write_transaction(registry.engine) as conn:
        return [job_ops.enqueue(conn, "push", {"n": i}) for i in range(count)]


def _complete(registry: SqlRegistry, job: job_ops.Job) -> bool:
    with write_transaction(registry.engine) as conn:
        return job_ops.complete(conn, job)


def test_a_job_is_claimed_once_and_completed_once(database_url: str) -> None:
    registry = _registry(database_url)
    try:
        (job_id,) = _enqueue(registry)
        job = job_ops.claim(registry.engine, "a", 60)
        assert job is not None
        assert job.id == job_id
        assert (job.status, job.worker, job.attempts) == ("running", "a", 1)
        assert job.payload == {"n": 0}
        assert job_ops.claim(registry.engine, "b", 60) is None
        assert job_ops.renew(registry.engine, job, 60)
        assert _complete(registry, job)
        assert not _complete(registry, job)  # never twice
        assert job_ops.claim(registry.engine, "b", 60) is None
        with registry.engine.connect() as conn:
            assert job_ops.get_job(conn, job_id).status == "completed"
    finally:
        registry.close()


def test_an_expired_lease_requeues_and_the_old_holder_is_refused(database_url: str) -> None:
    registry = _registry(database_url)
    try:
        _enqueue(registry)
        first = job_ops.claim(registry.engine, "a", 0.2)
        assert first is not None
        assert job_ops.claim(registry.engine, "b", 60) is None  # the lease still holds
        time.sleep(0.3)
        second = job_ops.claim(registry.engine, "b", 60)
        assert second is not None
        assert second.id == first.id
        assert second.attempts == 2
        assert not job_ops.renew(registry.engine, first, 60)
        assert not _complete(registry, first)  # a worker that lost its lease
        with write_transaction(registry.engine) as conn:
            assert not job_ops.fail(conn, first, "late")
        assert _complete(registry, second)
        # the same worker claiming again is a new claim: an old claim of it cannot complete
        _enqueue(registry)
        again = job_ops.claim(registry.engine, "c", 60, now=time.time() - 120)
        assert again is not None
        retaken = job_ops.claim(registry.engine, "c", 60)
        assert retaken is not None
        assert retaken.attempts == again.attempts + 1
        assert not _complete(registry, again)
        assert _complete(registry, retaken)
    finally:
        registry.close()


def test_concurrent_claimers_never_share_a_job(database_url: str) -> None:
    registry = _registry(database_url)
    try:
        ids = _enqueue(registry, 40)
        claimed: list[str] = []
        lock = threading.Lock()
        errors: list[BaseException] = []

        def claimer(name: str) -> None:
            try:
                while (job := job_ops.claim(registry.engine, name, 60)) is not None:
                    with lock:
                        claimed.append(job.id)
                    assert _complete(registry, job)
            except BaseException as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        assert sorted(claimed) == sorted(ids)
        with registry.engine.connect() as conn:
            attempts = conn.execute(sa.select(jobs_table.c.attempts)).scalars().all()
        assert set(attempts) == {1}
    finally:
        registry.close()


def _worker(store: str, log: Path) -> subprocess.Popen[Any]:
    with open(log, "w") as out:
        return subprocess.Popen(
            [
                *ensign_command(),
                "worker",
                "--tracking-uri",
                store,
                "--allow-run-scripts",
                "--lease-seconds",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def test_a_killed_worker_s_job_is_completed_once_by_another(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server", args=["--workers", "0"])
    workers: list[subprocess.Popen[Any]] = []
    try:
        key = create_project(server, "slow")
        bundle = write_tiny_bundle(
            tmp_path / "b", model={"modelType": "full", "batchCommand": "sleep 3"}
        )
        answer = commit(server, key, upload(server, make_tar(bundle, tmp_path / "b.tar")))
        assert answer.status_code == 201
        version_id = answer.json()["id"]
        workers.append(_worker(server.tracking_uri, tmp_path / "a.log"))
        deadline = time.monotonic() + 30
        while True:
            version = requests.get(
                f"{server.url}/v1/versions/{version_id}", headers=server.headers(), timeout=30
            ).json()
            if version["status"] == "running":
                break
            assert time.monotonic() < deadline, version
            time.sleep(0.1)
        first_run = version["ensign"]["runId"]
        os.kill(workers[0].pid, signal.SIGKILL)
        workers[0].wait(10)
        workers.append(_worker(server.tracking_uri, tmp_path / "b.log"))
        done = wait_version(server, version_id, timeout=60)
        assert done["status"] == "completed", done
        assert done["passingGoalCount"] == 1
        assert done["ensign"]["runId"] != first_run
        backend = open_backend(server.tracking_uri)
        try:
            registry = backend.registry
            assert isinstance(registry, SqlRegistry)
            with registry.engine.connect() as conn:
                rows = conn.execute(sa.select(jobs_table)).all()
            assert [(r.status, r.attempts) for r in rows] == [("completed", 2)]
            versions = registry.list_versions("slow", "artifact")
            assert [v.name for v in versions] == ["v1"]
            assert registry.get_run(first_run).status == "failed"
        finally:
            backend.close()
    finally:
        for process in workers:
            if process.poll() is None:
                process.terminate()
                process.wait(20)
        server.stop()
