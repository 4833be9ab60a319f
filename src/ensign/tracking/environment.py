"""What a run ran on: Python, installed packages, host, and the git state of the code."""

from __future__ import annotations

import getpass
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["capture_environment", "git_state"]


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Return the commit, branch, remote and dirty flag of the repository holding ``path``.

    Returns an empty dict outside a repository or without git.
    """
    cwd = Path(path or Path.cwd())
    if cwd.is_file():
        cwd = cwd.parent
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return {}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {
        "commit": commit,
        "branch": _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd),
        "remote": _git(["config", "--get", "remote.origin.url"], cwd),
        "root": _git(["rev-parse", "--show-toplevel"], cwd),
        "is_dirty": bool(status),
    }


def _name_and_version(dist: importlib.metadata.Distribution) -> tuple[str | None, str | None]:
    """Read a distribution's name and version from its metadata's header lines.

    Five times faster than ``dist.metadata`` (which parses the whole file, long description
    included, each time it is read); falls back to it when the header lacks either field.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    name = version = None
    for line in text.splitlines():
        if not line:
            break  # the header ends at the first blank line
        key, _, value = line.partition(":")
        if key == "Name":
            name = value.strip()
        elif key == "Version":
            version = value.strip()
    if name is None or version is None:
        metadata = dist.metadata
        return metadata["Name"], metadata["Version"]
    return name, version


def capture_environment() -> dict[str, Any]:
    """Return the environment of this process, as stored on a run."""
    packages = {}
    for dist in importlib.metadata.distributions():
        name, version = _name_and_version(dist)
        if name:
            packages[name] = version
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "user": user,
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "argv": list(sys.argv),
        "packages": dict(sorted(packages.items(), key=lambda kv: kv[0].lower())),
        "git": git_state(),
    }
