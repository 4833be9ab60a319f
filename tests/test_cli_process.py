"""The installed ``ensign`` command in real processes: one-line errors, exit codes, terminals.

Pseudo-terminals stand in for a person at a terminal: the delete confirmation and the pull
progress bar only appear there.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ensign import tracking

MODEL_BYTES = b"model-bytes:" + os.urandom(64) * 1000
TIMEOUT = 120


def ensign_command() -> list[str]:
    """The console script next to this interpreter, else ``python -m ensign``."""
    script = Path(sys.executable).with_name("ensign")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ensign"]


@dataclass(frozen=True)
class Store:
    uri: str
    folder: Path


@pytest.fixture
def store(tmp_path: Path) -> Store:
    model = tmp_path / "model.bin"
    model.write_bytes(MODEL_BYTES)
    uri = str(tmp_path / "tracking")
    with tracking.init(project="digits", tracking_uri=uri):
        tracking.log_metrics(step=1, acc=0.97)
        tracking.log_model_ref(model, name="model")
        assert tracking.promote_to_artifact_version(when="acc > 0.9") is not None
    return Store(uri, tmp_path / "tracking")


def run(
    store: Store, *args: str, command: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(command or ensign_command()), *args, "--tracking-uri", store.uri],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=TIMEOUT,
        check=False,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def on_terminal(
    store: Store, *args: str, typed: bytes = b"", tty_stdin: bool, tty_stderr: bool
) -> tuple[int, str, str, bytes]:
    """Run ensign with stdin and/or stderr on a pseudo-terminal; stdout is a pipe.

    Returns the exit status, stdout, stderr (when piped) and what reached the terminal.
    """
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [*ensign_command(), *args, "--tracking-uri", store.uri],
        stdin=slave if tty_stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave if tty_stderr else subprocess.PIPE,
    )
    os.close(slave)
    if typed:
        os.write(master, typed)
    screen = b""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: every process holding it is gone
                break
            if not chunk:
                break
            screen += chunk
    out, err = process.communicate(timeout=TIMEOUT)
    os.close(master)
    return process.returncode, out.decode(), (err or b"").decode(), screen


def test_a_missing_version_prints_one_line_and_exits_1(store: Store) -> None:
    line = assert_one_line_error(run(store, "artifacts", "get", "-p", "digits", "-ver", "v9"), 1)
    assert line == "error: artifact version 'v9' does not exist in 'digits'"


def test_a_usage_error_prints_one_line_and_exits_2(store: Store) -> None:
    line = assert_one_line_error(run(store, "artifacts", "stage", "-p", "digits", "-ver", "v1"), 2)
    assert "Missing option '-to' / '--to'" in line
    line = assert_one_line_error(run(store, "artifacts", "launch"), 2)
    assert "No such command 'launch'" in line


def test_an_unknown_stage_exits_1_listing_the_stages(store: Store) -> None:
    done = run(store, "models", "stage", "-p", "digits", "-ver", "v1", "-to", "live")
    line = assert_one_line_error(done, 1)
    assert "valid stages: testing, staging, production, disabled" in line


def test_a_corrupted_blob_fails_the_pull_naming_the_file(store: Store, tmp_path: Path) -> None:
    blobs = [p for p in (store.folder / "artifacts" / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1
    blobs[0].write_bytes(MODEL_BYTES[:-1] + b"!")
    done = run(store, "artifacts", "pull", "-p", "digits", "-ver", "v1", "--path", "out")
    line = assert_one_line_error(done, 1)
    assert "digest mismatch for model/model.bin" in line
    assert not (tmp_path / "out" / "model" / "model.bin").exists()


def test_python_m_ensign_runs_the_command(store: Store) -> None:
    python_m = [sys.executable, "-m", "ensign"]
    version = subprocess.run(
        [*python_m, "--version"], capture_output=True, text=True, timeout=TIMEOUT, check=True
    )
    assert version.stdout.strip() == "ensign 0.1.0"
    listed = run(store, "artifacts", "ls", "-p", "digits", "--json", command=python_m)
    assert listed.returncode == 0, listed.stderr
    assert [v["name"] for v in json.loads(listed.stdout)] == ["v1"]


def test_pull_in_a_process_writes_verified_files(store: Store, tmp_path: Path) -> None:
    done = run(store, "artifacts", "pull", "-p", "digits", "-ver", "v1", "--path", "out")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert (tmp_path / "out" / "model" / "model.bin").read_bytes() == MODEL_BYTES


def test_delete_without_yes_refuses_when_stdin_is_not_a_terminal(store: Store) -> None:
    line = assert_one_line_error(run(store, "artifacts", "delete", "-p", "digits", "-ver", "v1"), 1)
    assert "without confirmation" in line
    assert run(store, "artifacts", "get", "-p", "digits", "-ver", "v1").returncode == 0


@pytest.mark.parametrize(("answer", "deleted"), [(b"n\n", False), (b"y\n", True)])
def test_delete_asks_on_a_terminal(store: Store, answer: bytes, deleted: bool) -> None:
    code, out, err, _ = on_terminal(
        store,
        "artifacts",
        "delete",
        "-p",
        "digits",
        "-ver",
        "v1",
        typed=answer,
        tty_stdin=True,
        tty_stderr=False,
    )
    assert "Delete artifact version 'v1' of 'digits'? [y/N]" in out
    exists = run(store, "artifacts", "get", "-p", "digits", "-ver", "v1").returncode == 0
    if deleted:
        assert code == 0, err
        assert "deleted artifact version v1 of digits" in out
        assert not exists
    else:
        assert code == 1
        assert "Traceback" not in err
        assert exists


def test_pull_shows_a_byte_progress_bar_on_a_terminal(store: Store, tmp_path: Path) -> None:
    code, out, _, screen = on_terminal(
        store,
        "artifacts",
        "pull",
        "-p",
        "digits",
        "-ver",
        "v1",
        "--path",
        "out",
        tty_stdin=False,
        tty_stderr=True,
    )
    assert code == 0, screen
    total_kb = f"{len(MODEL_BYTES) / 1000:.1f}"
    assert out.strip() == f"pulled artifact version v1 of digits to out (1 files, {total_kb} kB)"
    text = screen.decode(errors="replace")
    assert "artifact v1" in text
    assert f"{total_kb}/{total_kb} kB" in text
    assert (tmp_path / "out" / "model" / "model.bin").read_bytes() == MODEL_BYTES
