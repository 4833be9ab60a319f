"""At scale: two server processes on one PostgreSQL and one S3, with concurrent clients.

Promoters (separate processes, tracking to either server) and pushers (the openlayer SDK,
to either server) run at the same moment: every version number is unique, every push is
evaluated and every job completes exactly once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from openlayer import Openlayer
from openlayer.lib.data.commit import push as sdk_push

from ensign.client import ProjectClient
from ensign.registry.sql.schema import jobs, pushes
from push_helpers import write_tiny_bundle
from serving import LiveServer, run_ensign, start_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SCRIPTS = Path(__file__).parent / "scripts"
PROMOTERS = 6
PUSHES = 6


def promote_everywhere(servers: list[LiveServer], token: str, sync: Path) -> list[str]:
    """Start one promoter process per slot, alternating servers; return the names they got."""
    script = str(SCRIPTS / "promote_worker.py")
    env = {**os.environ, "ENSIGN_TOKEN": token}
    with contextlib.ExitStack() as stack:
        procs = []
        for index in range(PROMOTERS):
            server = servers[index % len(servers)]
            proc = subprocess.Popen(
                [sys.executable, script, server.url, "-", str(sync), str(index)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            stack.callback(proc.kill)
            procs.append(proc)
        deadline = time.monotonic() + 120
        for index in range(PROMOTERS):
            ready = sync / f"ready-{index}"
            while not ready.exists():
                for proc in procs:
                    assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, f"promoter {index} never got ready"
                time.sleep(0.01)
        (sync / "go").touch()
        results = [proc.communicate(timeout=180) for proc in procs]
    failures = [err for proc, (_, err) in zip(procs, results, strict=True) if proc.returncode]
    assert failures == []
    return [out.strip() for out, _ in results]


def push_everywhere(servers: list[LiveServer], token: str, project_id: str, tmp: Path) -> None:
    """Push PUSHES bundles at once through the SDK, alternating servers."""
    errors: list[BaseException] = []

    def one(index: int) -> None:
        try:
            server = servers[index % len(servers)]
            client = Openlayer(api_key=token, base_url=f"{server.url}/v1")
            bundle = write_tiny_bundle(tmp / f"bundle-{index}")
            done: Any = sdk_push(client, str(bundle), project_id, wait_for_completion=True)
            assert done.status == "completed"
            assert (done.passing_goal_count, done.total_goal_count) == (1, 1)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(PUSHES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []


def test_two_servers_on_one_postgres_and_one_s3(
    tmp_path: Path, postgres_url: str, s3_bucket: str
) -> None:
    upgraded = run_ensign("db", "upgrade", "--tracking-uri", postgres_url)
    assert upgraded.returncode == 0, upgraded.stderr
    made = run_ensign("tokens", "create", "--role", "admin", "--tracking-uri", postgres_url)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    project = run_ensign("projects", "create", "pushes", "--tracking-uri", postgres_url)
    project_id = project.stdout.strip()
    artifacts = f"s3://{s3_bucket}/store"
    servers = [
        start_server(
            tmp_path / name,
            tracking_uri=postgres_url,
            artifacts_uri=artifacts,
            args=["--workers", "2"],
        )
        for name in ("a", "b")
    ]
    try:
        sync = tmp_path / "sync"
        sync.mkdir()
        pushing = threading.Thread(
            target=push_everywhere, args=(servers, token, project_id, tmp_path)
        )
        pushing.start()
        names = promote_everywhere(servers, token, sync)
        pushing.join(timeout=300)
        assert sorted(names, key=lambda n: int(n[1:])) == [f"v{n}" for n in range(1, PROMOTERS + 1)]
        os.environ["ENSIGN_TOKEN"] = token
        try:
            with ProjectClient("race", tracking_uri=servers[1].url) as pc:
                stored = pc.list_artifact_versions(limit=100)
            with ProjectClient("pushes", tracking_uri=servers[0].url) as pc:
                pushed = pc.list_artifact_versions(limit=100)
        finally:
            del os.environ["ENSIGN_TOKEN"]
        assert sorted(v.name for v in stored) == sorted(names)
        assert sorted(v.name for v in pushed) == sorted(f"v{n}" for n in range(1, PUSHES + 1))
        engine = sa.create_engine(postgres_url)
        try:
            with engine.connect() as conn:
                job_rows = conn.execute(sa.select(jobs.c.status, jobs.c.attempts)).all()
                push_rows = conn.execute(sa.select(pushes.c.status, pushes.c.version_name)).all()
        finally:
            engine.dispose()
        assert sorted(job_rows) == [("completed", 1)] * PUSHES
        assert sorted(r.status for r in push_rows) == ["completed"] * PUSHES
        assert len({r.version_name for r in push_rows}) == PUSHES
    finally:
        for server in servers:
            server.stop()
