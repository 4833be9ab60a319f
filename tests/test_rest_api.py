"""The native REST API over real HTTP: auth on every route, validation, limits, errors,
idempotency and the client's retries."""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from ensign.errors import (
    InvalidRequest,
    ProjectNotFound,
    RunNotFound,
    ServerUnavailable,
    VersionNotFound,
)
from ensign.registry.base import RunBatch, VersionSpec
from ensign.registry.rest import RestRegistry, RestSession
from ensign.registry.sql import SqlRegistry
from ensign.registry.sql.engine import write_transaction
from ensign.registry.sql.tokens import create_token
from serving import LiveServer, free_port, start_server

P = "org/p1"
D = "a" * 64


def make_tokens(database_url: str, grants: dict[str, tuple[str | None, str]]) -> dict[str, str]:
    """Create ``{label: (project, role)}`` tokens straight in a server's database."""
    registry = SqlRegistry(database_url)
    try:
        with write_transaction(registry.engine) as conn:
            return {
                label: create_token(conn, role=role, project=project)
                for label, (project, role) in grants.items()
            }
    finally:
        registry.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One server for the module with a project, a run, a version and tokens of each kind."""
    folder = tmp_path_factory.mktemp("api")
    server = start_server(folder)
    try:
        admin = RestRegistry(server.url, server.token)
        admin.create_project(P)
        admin.create_project("org/p2")
        run = admin.create_run(P, name="r")
        admin.create_version(P, "artifact", VersionSpec("v1"))
        tokens = make_tokens(
            f"sqlite:///{folder / 'store' / 'ensign.db'}",
            {
                "read": (P, "read"),
                "write": (P, "write"),
                "other": ("org/p2", "write"),
                "global_read": (None, "read"),
            },
        )
        admin.close()
        yield {"server": server, "run": run.uuid, "tokens": tokens}
    finally:
        server.stop()


def call(
    server: LiveServer,
    method: str,
    path: str,
    token: str | None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return requests.request(method, f"{server.url}{path}", json=body, headers=sent, timeout=30)


RUN = "{run}"
#: (method, path, body, role): every native route a bearer token opens.
PROJECT_ROUTES: list[tuple[str, str, Any, str]] = [
    ("GET", f"/api/v1/projects/{P}", None, "read"),
    ("POST", "/api/v1/projects/ensure", {"key": P}, "write"),
    ("POST", "/api/v1/runs", {"project": P}, "write"),
    ("GET", f"/api/v1/runs?project={P}", None, "read"),
    ("GET", f"/api/v1/runs/{RUN}", None, "read"),
    ("POST", f"/api/v1/runs/{RUN}/status", {"status": "failed"}, "write"),
    ("POST", f"/api/v1/runs/{RUN}/batch", {"params": {"a": 1}}, "write"),
    ("GET", f"/api/v1/runs/{RUN}/last-steps", None, "read"),
    ("GET", f"/api/v1/runs/{RUN}/metrics", None, "read"),
    ("GET", f"/api/v1/runs/{RUN}/refs", None, "read"),
    (
        "POST",
        f"/api/v1/runs/{RUN}/decisions",
        {"promoted": False, "evaluated_at": "2024-01-01T00:00:00+00:00"},
        "write",
    ),
    ("GET", f"/api/v1/runs/{RUN}/decisions", None, "read"),
    ("POST", f"/api/v1/versions/artifact?project={P}", {}, "write"),
    ("GET", f"/api/v1/versions/artifact?project={P}", None, "read"),
    ("GET", f"/api/v1/versions/artifact/v1?project={P}", None, "read"),
    ("PATCH", f"/api/v1/versions/artifact/v1?project={P}", {"description": "x"}, "write"),
    ("DELETE", f"/api/v1/versions/artifact/v1?project={P}", None, "write"),
    ("POST", f"/api/v1/versions/artifact/v1/stage?project={P}", {"stage": "staging"}, "write"),
    (
        "POST",
        f"/api/v1/versions/artifact/v1/transfer?project={P}",
        {"to_project": P},
        "write",
    ),
    ("GET", f"/api/v1/stage-holders/artifact/production?project={P}", None, "read"),
]
GLOBAL_ROUTES: list[tuple[str, str, Any, str]] = [
    ("GET", "/api/v1/projects", None, "read"),
    ("POST", "/api/v1/projects", {"key": "made-here"}, "admin"),
    ("GET", "/api/v1/settings/artifacts_uri", None, "admin"),
    ("POST", "/api/v1/settings/some_key", {"value": "x"}, "admin"),
    ("GET", "/api/v1/blobs/referenced", None, "admin"),
]
ANY_TOKEN_ROUTES: list[tuple[str, str, Any, str]] = [
    ("GET", "/api/v1/blobs/store", None, "read"),
    ("POST", "/api/v1/blobs/missing", {"digests": [D]}, "write"),
    ("POST", "/api/v1/blobs/downloads", {"digests": [D]}, "read"),
]
ALL_ROUTES = PROJECT_ROUTES + GLOBAL_ROUTES + ANY_TOKEN_ROUTES


def _ids(routes: list[tuple[str, str, Any, str]]) -> list[str]:
    return [f"{m} {p.split('?')[0]}" for m, p, _, _ in routes]


@pytest.mark.parametrize(("method", "path", "body", "role"), ALL_ROUTES, ids=_ids(ALL_ROUTES))
def test_every_route_needs_a_token(
    api: dict[str, Any], method: str, path: str, body: Any, role: str
) -> None:
    server = api["server"]
    path = path.replace(RUN, api["run"])
    missing = call(server, method, path, None, body)
    assert missing.status_code == 401, missing.text
    assert missing.json()["error"]["type"] == "Unauthorized"
    unknown = call(server, method, path, "ens_unknown", body)
    assert unknown.status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body", "role"), PROJECT_ROUTES, ids=_ids(PROJECT_ROUTES)
)
def test_project_routes_refuse_other_projects_and_weak_roles(
    api: dict[str, Any], method: str, path: str, body: Any, role: str
) -> None:
    server, tokens = api["server"], api["tokens"]
    path = path.replace(RUN, api["run"])
    other = call(server, method, path, tokens["other"], body)
    assert other.status_code == 403, other.text
    assert other.json()["error"]["type"] == "Forbidden"
    assert "org/p2" in other.json()["error"]["message"]
    if role == "write":
        weak = call(server, method, path, tokens["read"], body)
        assert weak.status_code == 403, weak.text
        assert "'read'" in weak.json()["error"]["message"]
    else:
        allowed = call(server, method, path, tokens["read"], body)
        assert allowed.status_code == 200, allowed.text


@pytest.mark.parametrize(("method", "path", "body", "role"), GLOBAL_ROUTES, ids=_ids(GLOBAL_ROUTES))
def test_global_routes_refuse_project_tokens(
    api: dict[str, Any], method: str, path: str, body: Any, role: str
) -> None:
    server, tokens = api["server"], api["tokens"]
    for label in ("read", "write"):
        refused = call(server, method, path, tokens[label], body)
        assert refused.status_code == 403, refused.text
        assert "covers only the project" in refused.json()["error"]["message"]
    answer = call(server, method, path, tokens["global_read"], body)
    assert answer.status_code == (200 if role == "read" else 403), answer.text


def test_blob_routes_need_write_for_upload_urls(api: dict[str, Any]) -> None:
    server, tokens = api["server"], api["tokens"]
    body = {"digests": [D]}
    weak = call(server, "POST", "/api/v1/blobs/missing", tokens["read"], body)
    assert weak.status_code == 403
    # Blobs are content-addressed and shared by projects: any write token may upload.
    for label in ("write", "other"):
        answer = call(server, "POST", "/api/v1/blobs/missing", tokens[label], body)
        assert answer.status_code == 200
        assert answer.json()["missing"] == [D]
        assert set(answer.json()["uploads"]) == {D}
    reads = call(server, "POST", "/api/v1/blobs/downloads", tokens["read"], body)
    assert reads.json() == {"downloads": {}, "missing": [D]}


def test_the_signing_secret_is_never_served(api: dict[str, Any]) -> None:
    server = api["server"]
    for method, body in (("GET", None), ("POST", {"value": "00" * 32})):
        answer = call(server, method, "/api/v1/settings/signing_secret", server.token, body)
        assert answer.status_code == 403
        assert "not available over HTTP" in answer.json()["error"]["message"]


def test_unknown_fields_are_a_400_naming_the_field(api: dict[str, Any]) -> None:
    server = api["server"]
    top = call(server, "POST", "/api/v1/runs", server.token, {"project": P, "colour": "red"})
    assert top.status_code == 400
    assert top.json()["error"]["type"] == "InvalidRequest"
    assert top.json()["error"]["message"] == "colour: unknown field"
    nested = call(
        server,
        "POST",
        f"/api/v1/runs/{api['run']}/batch",
        server.token,
        {"refs": [{"run": api["run"], "name": "x", "kind": "file", "bogus": 1}]},
    )
    assert nested.status_code == 400
    assert "refs.0.bogus: unknown field" in nested.json()["error"]["message"]
    wrong = call(server, "POST", f"/api/v1/runs/{api['run']}/status", server.token, {})
    assert wrong.status_code == 400
    assert "status: Field required" in wrong.json()["error"]["message"]
    registry = RestRegistry(server.url, server.token)
    try:
        with pytest.raises(InvalidRequest, match="colour: unknown field"):
            registry.session.call("POST", "/api/v1/projects", payload={"key": "k", "colour": 1})
    finally:
        registry.close()


@pytest.mark.parametrize("path", ["/api/v1/runs/{run}/batch", "/api/v1/blobs/missing"])
def test_an_oversized_json_body_is_a_413(api: dict[str, Any], path: str) -> None:
    server = api["server"]
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest("POST", path.format(run=api["run"]))
        conn.putheader("Authorization", f"Bearer {server.token}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(16 * 1024 * 1024 + 1))
        conn.endheaders()  # the body is never sent: the declared length is refused
        answer = conn.getresponse()
        assert answer.status == 413
        assert b"PayloadTooLarge" in answer.read()
    finally:
        conn.close()


def test_nonexistent_things_are_404_and_the_same_class_on_the_client(
    api: dict[str, Any],
) -> None:
    server = api["server"]
    missing = "f" * 32
    answer = call(server, "GET", f"/api/v1/runs/{missing}", server.token)
    assert answer.status_code == 404
    assert answer.json()["error"] == {
        "type": "RunNotFound",
        "message": f"run {missing!r} does not exist",
    }
    assert call(server, "GET", "/api/v1/projects/nope", server.token).status_code == 404
    version = call(server, "GET", f"/api/v1/versions/model/v9?project={P}", server.token)
    assert version.status_code == 404
    assert version.json()["error"]["type"] == "VersionNotFound"
    registry = RestRegistry(server.url, server.token)
    try:
        with pytest.raises(RunNotFound, match=f"run '{missing}' does not exist"):
            registry.get_run(missing)
        with pytest.raises(ProjectNotFound, match="project 'nope' does not exist"):
            registry.get_project("nope")
        with pytest.raises(VersionNotFound, match="model version 'v9' does not exist"):
            registry.get_version(P, "model", "v9")
    finally:
        registry.close()


def test_the_same_idempotency_key_creates_one_version(api: dict[str, Any]) -> None:
    server = api["server"]
    path = "/api/v1/versions/model?project=org/p2"
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = call(server, "POST", path, server.token, {"description": "once"}, key)
    second = call(server, "POST", path, server.token, {"description": "once"}, key)
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    listed = call(server, "GET", "/api/v1/versions/model?project=org/p2", server.token)
    assert [v["name"] for v in listed.json()["versions"]] == [first.json()["name"]]
    # The key names that request only: another body with it is refused, nothing is made.
    reused = call(server, "POST", path, server.token, {"description": "other"}, key)
    assert reused.status_code == 400
    assert "already used for a different request" in reused.json()["error"]["message"]
    # Errors are replayed too; a new key runs the request again.
    failing = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"name": first.json()["name"]}
    taken = call(server, "POST", path, server.token, body, failing)
    assert taken.status_code == 409
    assert call(server, "POST", path, server.token, body, failing).content == taken.content
    fresh = call(server, "POST", path, server.token, {}, {"Idempotency-Key": "another"})
    assert fresh.json()["name"] != first.json()["name"]


def test_a_replayed_run_create_never_makes_two_runs(api: dict[str, Any]) -> None:
    server = api["server"]
    body = {"project": "org/p2", "run_uuid": uuid.uuid4().hex, "name": "once"}
    key = {"Idempotency-Key": "create-run-1"}
    first = call(server, "POST", "/api/v1/runs", server.token, body, key)
    again = call(server, "POST", "/api/v1/runs", server.token, body, key)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    # Without the key the same id is refused: a retry can never make a second run.
    duplicate = call(server, "POST", "/api/v1/runs", server.token, body)
    assert duplicate.status_code == 409


def test_content_keys_make_a_resent_write_a_replay(api: dict[str, Any]) -> None:
    server = api["server"]
    first, second = (RestRegistry(server.url, server.token) for _ in range(2))
    try:
        run = first.create_run("org/p2").uuid
        batch = RunBatch(run, metrics=[("loss", 0, 0.5, 1.0)])
        for registry in (first, second):  # two processes sending the same spool
            with registry.content_keys(f"sync:{run}"):
                registry.write_batch(batch)
                made = registry.create_version("org/p2", "artifact", VersionSpec(None, run=run))
        assert [p.step for p in first.get_metrics(run)["loss"]] == [0]
        assert [v.name for v in first.list_versions("org/p2", "artifact")] == [made.name]
        first.write_batch(batch)  # outside the block every call is new
        assert [p.step for p in first.get_metrics(run)["loss"]] == [0, 0]
    finally:
        first.close()
        second.close()


def test_batched_writes_carry_nan_and_infinities(api: dict[str, Any]) -> None:
    server = api["server"]
    registry = RestRegistry(server.url, server.token)
    try:
        run = registry.create_run(P).uuid
        rows = [("loss", 0, float("nan"), 1.0), ("loss", 1, float("inf"), 2.0)]
        registry.write_batch(RunBatch(run, metrics=rows, params={"lr": float("nan")}))
        loss = registry.get_metrics(run)["loss"]
        assert str(loss[0].value) == "nan"
        assert loss[1].value == float("inf")
        assert str(registry.get_run(run).params["lr"]) == "nan"
        assert registry.get_metrics(run, names=[]) == {}
        assert registry.last_steps(run) == {"loss": 1}
    finally:
        registry.close()


# --- retries ------------------------------------------------------------------------------


def test_a_client_waits_for_a_server_that_starts_late(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    token = make_tokens(f"sqlite:///{store / 'ensign.db'}", {"admin": (None, "admin")})["admin"]
    port = free_port()
    started: list[LiveServer] = []

    def start_later() -> None:
        time.sleep(1.0)
        started.append(start_server(tmp_path, tracking_uri=str(store), port=port))

    starter = threading.Thread(target=start_later)
    starter.start()
    registry = RestRegistry(f"http://127.0.0.1:{port}", token)
    try:
        began = time.monotonic()
        assert registry.create_project("late").key == "late"  # retried until it serves
        assert time.monotonic() - began >= 1.0
        assert [p.key for p in registry.list_projects()] == ["late"]
    finally:
        registry.close()
        starter.join()
        for server in started:
            server.stop()


def test_after_the_retry_budget_the_client_raises_server_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(RestSession, "attempts", 3)
    monkeypatch.setattr(RestSession, "backoff", 0.05)
    url = f"http://127.0.0.1:{free_port()}"
    registry = RestRegistry(url, "ens_whatever")
    try:
        began = time.monotonic()
        with pytest.raises(ServerUnavailable, match="cannot reach the ensign server at") as info:
            registry.create_run("digits")
        assert time.monotonic() - began < 5
        assert f"{url}/api/v1/runs" in str(info.value)
        assert "3 tries" in str(info.value)
        assert isinstance(info.value, ConnectionError)
    finally:
        registry.close()


def test_a_stranger_cannot_claim_an_idempotency_key(live_server: LiveServer) -> None:
    import sqlalchemy as sa

    from ensign.registry.sql.schema import idempotency_keys

    answer = requests.post(
        f"{live_server.url}/api/v1/projects",
        json={"key": "stranger", "description": None},
        headers={"Authorization": "Bearer ens_nobody", "Idempotency-Key": "k-1"},
        timeout=10,
    )
    assert answer.status_code == 401
    engine = sa.create_engine(f"sqlite:///{live_server.tracking_uri}/ensign.db")
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(idempotency_keys)).all()
    finally:
        engine.dispose()
    assert rows == []


def _ref_body(run: str, **changes: Any) -> dict[str, Any]:
    ref = {
        "run": run,
        "name": "model",
        "kind": "model",
        "uri": None,
        "digest": None,
        "size": None,
        "is_input": False,
        "summary": {},
        "store_uri": None,
        "manifest": {},
    }
    ref.update(changes)
    return {"refs": [ref]}


def test_a_batch_cannot_write_refs_of_another_run_or_name_another_store(
    api: dict[str, Any],
) -> None:
    server, tokens, run = api["server"], api["tokens"], api["run"]
    other = RestRegistry(server.url, tokens["other"])
    try:
        theirs = other.create_run("org/p2").uuid
    finally:
        other.close()
    path = f"/api/v1/runs/{theirs}/batch"
    forged = call(server, "POST", path, tokens["other"], _ref_body(run))
    assert forged.status_code == 400
    assert forged.json()["error"]["message"].startswith(
        f"refs[0].run: a batch of run {theirs} cannot log refs of run {run}"
    )
    elsewhere = call(
        server, "POST", path, tokens["other"], _ref_body(theirs, store_uri="file:///etc")
    )
    assert elsewhere.status_code == 400
    assert "refs[0].store_uri" in elsewhere.json()["error"]["message"]
    admin = RestRegistry(server.url, server.token)
    try:
        assert admin.list_refs(run) == []  # the other project's run is untouched
        assert admin.list_refs(theirs) == []
    finally:
        admin.close()
