"""What an ``ensign server`` process is started with."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServerSettings"]


@dataclass(frozen=True)
class ServerSettings:
    """Options of ``ensign server`` (see DESIGN §5).

    Attributes:
        tracking_uri: Where metadata lives: a folder, ``sqlite:///FILE`` or
            ``postgresql+psycopg://...`` (not a server).
        artifacts_uri: Where bytes go; else the one the store remembers.
        allow_run_scripts: Run the ``batchCommand`` of pushed ``full`` models.
        max_json_bytes: The largest JSON request body accepted (413 beyond).
        max_bundle_bytes: The largest pushed bundle accepted (413 beyond), packed or unpacked.
        script_time_limit: Seconds a ``batchCommand`` may run before it is killed.
        job_lease_seconds: How long a worker holds a job before another may take it over.
        workers: Evaluation workers run inside the server process (0 for none).
        migrate: Apply pending migrations at start; otherwise refuse an old schema.
    """

    tracking_uri: str | None = None
    artifacts_uri: str | None = None
    allow_run_scripts: bool = False
    max_json_bytes: int = 16 * 1024 * 1024
    max_bundle_bytes: int = 512 * 1024 * 1024
    script_time_limit: float = 600.0
    job_lease_seconds: float = 60.0
    workers: int = 1
    migrate: bool = False
