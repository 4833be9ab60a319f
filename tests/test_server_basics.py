"""The server process: health, OpenAPI, the first administrator token, auth and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from ensign.errors import Forbidden
from serving import LiveServer, start_server
from serving import run_ensign as ensign


def test_healthz_and_openapi(live_server: LiveServer) -> None:
    assert requests.get(f"{live_server.url}/healthz", timeout=10).json()["status"] == "ok"
    document = requests.get(f"{live_server.url}/openapi.json", timeout=10).json()
    assert "/healthz" in document["paths"]
    assert "/api/v1/capabilities" in document["paths"]


def test_first_start_prints_an_admin_token_once(tmp_path: Path) -> None:
    first = start_server(tmp_path / "a")
    try:
        assert first.token.startswith("ens_")
        answer = requests.get(
            f"{first.url}/api/v1/capabilities", headers=first.headers(), timeout=10
        )
        assert answer.status_code == 200
    finally:
        first.stop()
    again = start_server(tmp_path / "a", tracking_uri=first.tracking_uri)
    try:
        assert again.token == ""  # not printed a second time
        still = requests.get(
            f"{again.url}/api/v1/capabilities", headers=first.headers(), timeout=10
        )
        assert still.status_code == 200
    finally:
        again.stop()


def test_no_token_is_401_and_unknown_token_is_401(live_server: LiveServer) -> None:
    url = f"{live_server.url}/api/v1/capabilities"
    missing = requests.get(url, timeout=10)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "Unauthorized"
    wrong = requests.get(url, headers=live_server.headers("ens_not-a-token"), timeout=10)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "unknown token"


def test_expired_token_is_401(live_server: LiveServer) -> None:
    made = ensign(
        "tokens", "create", "--role", "read", "--expires-in", "0.001",
        "--tracking-uri", live_server.tracking_uri,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    answer = requests.get(
        f"{live_server.url}/api/v1/capabilities",
        headers=live_server.headers(made.stdout.strip()),
        timeout=10,
    )
    assert answer.status_code == 401
    assert "expired" in answer.json()["error"]["message"]


def test_unknown_endpoint_is_a_json_404(live_server: LiveServer) -> None:
    answer = requests.get(f"{live_server.url}/api/v1/nothing", timeout=10)
    assert answer.status_code == 404
    assert answer.json() == {"error": {"type": "NotFound", "message": "no such endpoint"}}


def test_projects_and_tokens_commands_print_one_value(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    made = ensign("projects", "create", "org/digits", "--tracking-uri", store)
    assert made.returncode == 0, made.stderr
    assert len(made.stdout.strip()) == 32
    again = ensign("projects", "create", "org/digits", "--tracking-uri", store)
    assert again.returncode == 1
    assert again.stderr.strip() == "error: project 'org/digits' already exists"
    token = ensign(
        "tokens", "create", "--project", "org/digits", "--role", "write", "--tracking-uri", store
    )
    assert token.returncode == 0, token.stderr
    assert token.stdout.strip().startswith("ens_")
    assert len(token.stdout.strip().splitlines()) == 1
    unknown = ensign(
        "tokens", "create", "--project", "nope", "--role", "read", "--tracking-uri", store
    )
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: project 'nope' does not exist"
    bad_role = ensign("tokens", "create", "--role", "boss", "--tracking-uri", store)
    assert bad_role.returncode == 2
    assert "boss" in bad_role.stderr
    assert len(bad_role.stderr.strip().splitlines()) == 1


def test_server_refuses_a_server_uri(tmp_path: Path) -> None:
    answer = ensign("server", "--tracking-uri", "http://127.0.0.1:1")
    assert answer.returncode == 1
    assert answer.stderr.startswith("error: ensign server needs the store's database")
    assert len(answer.stderr.strip().splitlines()) == 1


def test_db_upgrade_reports_the_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    first = ensign("db", "upgrade", "--tracking-uri", url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "schema upgraded from nothing to revision 0002"
    second = ensign("db", "upgrade", "--tracking-uri", url)
    assert second.stdout.strip() == "schema already at revision 0002"


@pytest.mark.postgres
def test_a_server_on_postgres_refuses_a_schema_that_is_behind(
    tmp_path: Path, postgres_url: str
) -> None:
    refused = ensign("server", "--tracking-uri", postgres_url, "--port", "0")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: the database has no schema, this ensign needs 0002: run "
        "'ensign db upgrade --tracking-uri URI' first"
    )
    assert ensign("db", "upgrade", "--tracking-uri", postgres_url).returncode == 0
    server = start_server(tmp_path / "pg", tracking_uri=postgres_url, artifacts_uri=str(tmp_path))
    try:
        assert server.token.startswith("ens_")
    finally:
        server.stop()


def test_a_newcomer_serves_a_store_and_both_clients_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's walk-through: server, project, token, then the SDK and tracking."""
    from openlayer import Openlayer
    from openlayer.lib.data.commit import push as sdk_push

    from ensign import tracking
    from ensign.client import ProjectClient
    from push_helpers import write_tiny_bundle

    server = start_server(tmp_path / "server")
    try:
        project_id = ensign(
            "projects", "create", "acme/digits", "--tracking-uri", server.tracking_uri
        ).stdout.strip()
        token = ensign(
            "tokens", "create", "--project", "acme/digits", "--role", "write",
            "--tracking-uri", server.tracking_uri,
        ).stdout.strip()  # fmt: skip
        client = Openlayer(api_key=token, base_url=f"{server.url}/v1")
        pushed = sdk_push(
            client,
            str(write_tiny_bundle(tmp_path / "bundle")),
            project_id,
            wait_for_completion=True,
        )
        assert pushed is not None
        assert (pushed.status, pushed.passing_goal_count) == ("completed", 1)

        monkeypatch.setenv("ENSIGN_TOKEN", token)
        weights = tmp_path / "model.bin"
        weights.write_bytes(b"weights " * 100)
        with tracking.init(project="acme/digits", tracking_uri=server.url):
            tracking.log_metrics(step=0, acc=0.95)
            tracking.log_model_ref(weights, name="model")
            version = tracking.promote_to_model_version(when="acc >= 0.9")
        assert version is not None
        assert version.name == "v1"
        with ProjectClient("acme/digits", tracking_uri=server.url) as pc:
            assert pc.get_model_version("v1").run == version.run
            pulled = pc.pull_model_version("v1", tmp_path / "pulled")  # with the project token
            assert (pulled / "model" / "model.bin").read_bytes() == weights.read_bytes()
            assert [v.name for v in pc.list_artifact_versions()] == ["v1"]  # the push's
        other = ensign("projects", "create", "acme/other", "--tracking-uri", server.tracking_uri)
        assert other.returncode == 0
        with pytest.raises(Forbidden, match="covers the project 'acme/digits'"):
            tracking.init(project="acme/other", tracking_uri=server.url)
    finally:
        server.stop()
