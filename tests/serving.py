"""Starting ``ensign server`` as a real process for tests, and talking to it over HTTP."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class LiveServer:
    """An ``ensign server`` process started by a test.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        token: The administrator token it printed at its first start.
        tracking_uri: The store it serves.
        process: The server process.
    """

    url: str
    token: str
    tracking_uri: str
    process: subprocess.Popen[str]
    log: Path

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


def ensign_command() -> list[str]:
    """The console script next to this interpreter, else ``python -m ensign``."""
    script = Path(sys.executable).with_name("ensign")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ensign"]


def run_ensign(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``ensign`` command and capture what it prints."""
    return subprocess.run(
        [*ensign_command(), *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    folder: Path,
    *,
    tracking_uri: str | None = None,
    artifacts_uri: str | None = None,
    args: Sequence[str] = (),
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> LiveServer:
    """Start ``ensign server`` in a subprocess and wait until ``/healthz`` answers."""
    import requests

    folder.mkdir(parents=True, exist_ok=True)
    store = tracking_uri or str(folder / "store")
    port = port or free_port()
    command = [*ensign_command(), "server", "--port", str(port)]
    command += ["--tracking-uri", store]
    if artifacts_uri:
        command += ["--artifacts-uri", artifacts_uri]
    command += list(args)
    log = folder / f"server-{port}.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"ensign server exited {process.returncode}: {log.read_text()}")
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"ensign server did not start: {log.read_text()}")
        time.sleep(0.1)
    found = re.search(r"administrator token \(shown once\): (\S+)", log.read_text())
    token = found.group(1) if found else ""
    return LiveServer(url, token, store, process, log)
