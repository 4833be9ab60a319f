"""Pushing bundles to a live ``ensign server`` over HTTP, as the openlayer SDK does."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import requests

from bundle_helpers import accuracy_goal
from serving import LiveServer, run_ensign


def create_project(server: LiveServer, key: str) -> str:
    """Create a project in the server's store; return its id."""
    done = run_ensign("projects", "create", key, "--tracking-uri", server.tracking_uri)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def create_token(server: LiveServer, project: str | None, role: str) -> str:
    """Create an API token on the server's store."""
    args = ["tokens", "create", "--role", role, "--tracking-uri", server.tracking_uri]
    if project is not None:
        args += ["--project", project]
    done = run_ensign(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def write_tiny_bundle(
    folder: Path,
    *,
    goals: list[dict[str, Any]] | None = None,
    model: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """A small, passing shell bundle: 8 rows, accuracy 0.75 (or the config given)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["f1,label,predictions"] + [
        f"{i},{i % 2},{(i % 2) if i < 6 else 1 - i % 2}" for i in range(8)
    ]
    (folder / "validation.csv").write_text("\n".join(rows) + "\n")
    (folder / "tests.json").write_text(json.dumps(goals or [accuracy_goal(0.5)]))
    base = {
        "taskType": "tabular-classification",
        "model": model or {"modelType": "shell"},
        "datasets": [
            {
                "name": "validation",
                "path": "validation.csv",
                "label": "validation",
                "labelColumnName": "label",
                "predictionsColumnName": "predictions",
                "classNames": ["0", "1"],
                "featureNames": ["f1"],
            }
        ],
        "testsPath": "tests.json",
    }
    (folder / "openlayer.json").write_text(json.dumps(config or base))
    return folder


def upload(server: LiveServer, archive: Path, token: str | None = None) -> str:
    """Upload a bundle archive the way the SDK does; return its storage URI."""
    headers = server.headers(token)
    answer = requests.post(
        f"{server.url}/v1/storage/presigned-url",
        params={"objectName": "bundle.tar"},
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    target = answer.json()
    with open(archive, "rb") as handle:
        sent = requests.post(
            target["url"],
            data=target["fields"],
            files={"file": ("bundle.tar", handle, "application/x-tar")},
            timeout=60,
        )
    assert sent.status_code < 300, sent.text
    return str(target["storageUri"])


def commit(
    server: LiveServer,
    project: str,
    storage_uri: str,
    *,
    token: str | None = None,
    extra: dict[str, Any] | None = None,
) -> requests.Response:
    """Create a version for an uploaded bundle."""
    body: dict[str, Any] = {"commit": {"message": "test push"}, "storageUri": storage_uri}
    body.update(extra or {})
    return requests.post(
        f"{server.url}/v1/projects/{project}/versions",
        json=body,
        headers=server.headers(token),
        timeout=30,
    )


def wait_version(server: LiveServer, version_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll a version until it is completed or failed."""
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.get(
            f"{server.url}/v1/versions/{version_id}", headers=server.headers(), timeout=30
        )
        assert answer.status_code == 200, answer.text
        version: dict[str, Any] = answer.json()
        if version["status"] in ("completed", "failed"):
            return version
        assert time.monotonic() < deadline, f"still {version['status']}: {version}"
        time.sleep(0.2)


def push_archive(server: LiveServer, project: str, archive: Path) -> dict[str, Any]:
    """Upload, commit and wait; return the final version object."""
    answer = commit(server, project, upload(server, archive))
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "queued"
    return wait_version(server, answer.json()["id"])
