"""``ensign server``, ``ensign worker`` and the commands that administer a store's database."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import click

from ensign.cli.options import F, tracking_uri_option
from ensign.config import resolve_tracking_uri, tracking_location
from ensign.errors import ConfigurationError
from ensign.registry.sql import SqlRegistry
from ensign.registry.sql.engine import (
    HEAD_REVISION,
    create_engine,
    current_revision,
    upgrade,
    write_transaction,
)
from ensign.registry.sql.tokens import ROLES, create_token
from ensign.server.settings import ServerSettings

__all__ = ["db", "projects", "server", "store_options", "tokens", "worker"]


def _database_url(tracking_uri: str | None) -> str:
    location = tracking_location(resolve_tracking_uri(tracking_uri))
    if location.database_url is None:
        raise ConfigurationError(
            f"{location.uri} is a server; this command works on its database: pass the "
            "server's own --tracking-uri (a folder, sqlite:///FILE or postgresql+psycopg://...)"
        )
    return location.database_url


def store_options(func: F) -> F:
    """Add what the server and its workers share: the store and how bundles are evaluated."""
    options = [
        tracking_uri_option,
        click.option(
            "--artifacts-uri",
            metavar="URI",
            default=None,
            help="Where bytes go: a folder, s3://bucket/prefix, ... [default: the store's own]",
        ),
        click.option(
            "--allow-run-scripts",
            is_flag=True,
            help="Run the batchCommand of pushed 'full' models (a subprocess with a time limit).",
        ),
        click.option(
            "--script-time-limit",
            type=click.FloatRange(min=0, min_open=True),
            default=ServerSettings.script_time_limit,
            show_default=True,
            metavar="SECONDS",
            help="Seconds a pushed model's batchCommand may run.",
        ),
        click.option(
            "--max-bundle-bytes",
            type=click.IntRange(min=1),
            default=ServerSettings.max_bundle_bytes,
            hidden=True,
        ),
        click.option(
            "--lease-seconds",
            type=click.FloatRange(min=0, min_open=True),
            default=ServerSettings.job_lease_seconds,
            hidden=True,
            help="How long a worker holds a job before another may take it over.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(
    tracking_uri: str | None,
    artifacts_uri: str | None,
    allow_run_scripts: bool,
    script_time_limit: float,
    max_bundle_bytes: int,
    lease_seconds: float,
    workers: int,
) -> ServerSettings:
    return ServerSettings(
        tracking_uri=tracking_uri,
        artifacts_uri=artifacts_uri,
        allow_run_scripts=allow_run_scripts,
        script_time_limit=script_time_limit,
        max_bundle_bytes=max_bundle_bytes,
        job_lease_seconds=lease_seconds,
        workers=workers,
    )


@click.command("server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=ServerSettings.workers,
    show_default=True,
    help="Evaluation workers inside this process (0: leave jobs to 'ensign worker').",
)
@click.option("--access-log", is_flag=True, help="Log every request.")
@store_options
def server(
    host: str,
    port: int,
    workers: int,
    access_log: bool,
    tracking_uri: str | None,
    artifacts_uri: str | None,
    allow_run_scripts: bool,
    script_time_limit: float,
    max_bundle_bytes: int,
    lease_seconds: float,
) -> None:
    """Serve the REST API of a store; GET /healthz answers 200 once it serves."""
    import uvicorn

    from ensign.server.app import create_app
    from ensign.server.state import open_state

    settings = _settings(
        tracking_uri,
        artifacts_uri,
        allow_run_scripts,
        script_time_limit,
        max_bundle_bytes,
        lease_seconds,
        workers,
    )
    app = create_app(settings, state=open_state(settings))
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="warning")


@click.group("projects")
def projects() -> None:
    """Create projects (on the store's database)."""


@projects.command("create")
@click.argument("name")
@click.option("--description", default=None, help="Free text.")
@tracking_uri_option
def create_project(name: str, description: str | None, tracking_uri: str | None) -> None:
    """Create a project and print its id alone."""
    registry = SqlRegistry(_database_url(tracking_uri))
    try:
        project = registry.create_project(name, description)
    finally:
        registry.close()
    click.echo(project.id)


@click.group("tokens")
def tokens() -> None:
    """Create API tokens for ensign server (on the store's database)."""


@tokens.command("create")
@click.option(
    "--project",
    metavar="NAME",
    default=None,
    help="The project the token covers (key or id) [default: every project].",
)
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the token may do.")
@click.option("--name", default=None, help="A label for people.")
@click.option(
    "--expires-in",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Lifetime [default: never expires].",
)
@tracking_uri_option
def create_api_token(
    project: str | None,
    role: str,
    name: str | None,
    expires_in: float | None,
    tracking_uri: str | None,
) -> None:
    """Create a token and print it alone (it is shown only this once)."""
    registry = SqlRegistry(_database_url(tracking_uri))
    try:
        with write_transaction(registry.engine) as conn:
            token = create_token(conn, role=role, project=project, name=name, expires_in=expires_in)
    finally:
        registry.close()
    click.echo(token)


@click.group("db")
def db() -> None:
    """The metadata database's schema."""


@db.command("upgrade")
@tracking_uri_option
def db_upgrade(tracking_uri: str | None) -> None:
    """Apply pending migrations (safe while other processes start)."""
    engine = create_engine(_database_url(tracking_uri))
    try:
        before = current_revision(engine)
        upgrade(engine)
    finally:
        engine.dispose()
    if before == HEAD_REVISION:
        click.echo(f"schema already at revision {HEAD_REVISION}")
    else:
        click.echo(f"schema upgraded from {before or 'nothing'} to revision {HEAD_REVISION}")


@click.command("worker")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Jobs evaluated at once.",
)
@store_options
def worker(
    concurrency: int,
    tracking_uri: str | None,
    artifacts_uri: str | None,
    allow_run_scripts: bool,
    script_time_limit: float,
    max_bundle_bytes: int,
    lease_seconds: float,
) -> None:
    """Evaluate pushed bundles queued in a shared store, until stopped (Ctrl-C, SIGTERM)."""
    from ensign.server.worker import open_worker_context, start_pool

    settings = _settings(
        tracking_uri,
        artifacts_uri,
        allow_run_scripts,
        script_time_limit,
        max_bundle_bytes,
        lease_seconds,
        concurrency,
    )
    context = open_worker_context(settings)
    pool = start_pool(context, concurrency)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        pool.stop(timeout=0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stderr.write(f"ensign worker: {concurrency} worker(s) on {context.backend.location.uri}\n")
    sys.stderr.flush()
    try:
        pool.wait()
    finally:
        pool.stop()
        context.backend.close()
