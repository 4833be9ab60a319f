"""``ensign push`` against a real server: exit statuses, promotion, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bundle_helpers import accuracy_goal
from ensign.backend import open_backend
from push_helpers import create_project, write_tiny_bundle
from serving import LiveServer, free_port, run_ensign, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("cli-server"))
    try:
        create_project(live, "cli")
        yield live
    finally:
        live.stop()


def _push(server: LiveServer, folder: Path, *args: str) -> tuple[int, str, str]:
    done = run_ensign(
        "push",
        str(folder),
        "-p",
        "cli",
        "-m",
        "from the cli",
        "--tracking-uri",
        server.url,
        *args,
        env={"ENSIGN_TOKEN": server.token},
    )
    return done.returncode, done.stdout, done.stderr


def _one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_push_wait_passes_and_fails_with_the_goals(server: LiveServer, tmp_path: Path) -> None:
    code, out, err = _push(server, write_tiny_bundle(tmp_path / "good"), "--wait")
    assert code == 0, err
    assert "completed" in out
    assert "passing 1  failing 0  total 1" in out
    assert "PASS" in out
    assert "Accuracy above threshold" in out
    assert "0.75" in out

    strict = write_tiny_bundle(tmp_path / "bad", goals=[accuracy_goal(0.9, name="Strict")])
    code, out, err = _push(server, strict, "--wait")
    assert code == 1
    assert "FAIL" in out
    assert "Strict" in out
    assert "1 of 1 goals not passing" in _one_line_error(err)

    code, out, err = _push(server, write_tiny_bundle(tmp_path / "nowait"))
    assert code == 0
    assert "queued" in out


def test_push_promotes_when_the_condition_holds(server: LiveServer, tmp_path: Path) -> None:
    when = ["--when", "goals_all_passing == 1", "--stage", "staging", "--kind", "model"]
    code, out, err = _push(server, write_tiny_bundle(tmp_path / "good"), "--wait", "--json", *when)
    assert code == 0, err
    promoted = json.loads(out)
    assert promoted["ensign"]["promotion"]["promoted"] is True
    strict = write_tiny_bundle(tmp_path / "bad", goals=[accuracy_goal(0.9)])
    code, out, err = _push(server, strict, "--wait", *when)
    assert code == 1
    assert "not promoted to staging" in out
    backend = open_backend(server.tracking_uri)
    try:
        registry = backend.registry
        good = registry.get_version("cli", "model", promoted["ensign"]["version"])
        assert good.stage == "staging"
        assert good.evaluation is not None
        assert good.evaluation["passingGoalCount"] == 1
        decisions = registry.list_decisions(promoted["ensign"]["runId"])
        assert [d.promoted for d in decisions] == [True]
        assert "goals_all_passing" in decisions[0].reasons[0]
        (held,) = [v for v in registry.list_versions("cli", "model") if v.stage != "staging"]
        assert held.stage == "testing"
        assert [d.promoted for d in registry.list_decisions(str(held.run))] == [False]
    finally:
        backend.close()


def test_a_failed_push_is_one_line(server: LiveServer, tmp_path: Path) -> None:
    folder = write_tiny_bundle(tmp_path / "b")
    (folder / "openlayer.json").write_text('{"taskType": "astrology"}')
    code, _out, err = _push(server, folder, "--wait")
    assert code == 1
    line = _one_line_error(err)
    assert "failed" in line
    assert "taskType" in line


def test_user_errors_are_one_line(server: LiveServer, tmp_path: Path) -> None:
    code, _out, err = _push(server, tmp_path / "missing")
    assert code == 1
    assert "no such folder" in _one_line_error(err)
    (tmp_path / "empty").mkdir()
    code, _out, err = _push(server, tmp_path / "empty")
    assert code == 1
    assert "openlayer.json" in _one_line_error(err)
    folder = write_tiny_bundle(tmp_path / "b")
    done = run_ensign(
        "push", str(folder), "-p", "cli", "--tracking-uri", f"http://127.0.0.1:{free_port()}"
    )
    assert done.returncode == 1
    assert "cannot reach" in _one_line_error(done.stderr)
    done = run_ensign("push", str(folder), "-p", "cli", "--tracking-uri", str(tmp_path / "store"))
    assert done.returncode == 1
    assert "needs a server" in _one_line_error(done.stderr)
    done = run_ensign("push", str(folder), "-p", "cli", "--tracking-uri", server.url)
    assert done.returncode == 1
    assert "no token" in _one_line_error(done.stderr)
    code, _out, err = _push(server, folder, "--when", "goals_all_passing ==")
    assert code == 1
    assert "goals_all_passing" in _one_line_error(err)
