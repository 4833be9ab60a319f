"""The server process: health, OpenAPI, the first administrator token, auth and errors."""

from __future__ import annotations

from pathlib import Path

import requests

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
    assert answer.stderr.startswith("error: ensign server needs a folder")
    assert len(answer.stderr.strip().splitlines()) == 1


def test_db_upgrade_reports_the_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    first = ensign("db", "upgrade", "--tracking-uri", url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "schema upgraded from nothing to revision 0002"
    second = ensign("db", "upgrade", "--tracking-uri", url)
    assert second.stdout.strip() == "schema already at revision 0002"
