"""Evaluation workers (placeholder until the job queue lands)."""

from __future__ import annotations

from ensign.server.state import ServerState

__all__ = ["WorkerPool", "start_workers"]


class WorkerPool:
    """The workers a server runs in-process."""

    def stop(self) -> None:
        """Stop every worker."""


def start_workers(state: ServerState) -> WorkerPool:
    """Start the in-process workers ``state.settings.workers`` asks for."""
    return WorkerPool()
