"""``ensign sync``: send the runs spooled while a server could not be reached."""

from __future__ import annotations

import click

from ensign.backend import open_backend
from ensign.cli.errors import CliError
from ensign.cli.options import tracking_uri_option
from ensign.config import resolve_tracking_uri, tracking_location
from ensign.errors import ConfigurationError
from ensign.tracking.spool import Spool

__all__ = ["sync"]


@click.command("sync")
@tracking_uri_option
def sync(tracking_uri: str | None) -> None:
    """Send the runs logged to the offline spool of a server, then forget them."""
    location = tracking_location(resolve_tracking_uri(tracking_uri))
    if not location.is_remote:
        raise ConfigurationError(
            f"{location.uri} is not a server: only runs of an http(s):// tracking URI are spooled"
        )
    spool = Spool(location.uri)
    if not spool.pending():
        spool.close()
        click.echo(f"nothing spooled for {location.uri}")
        return
    remote = open_backend(location.uri)
    try:
        report = spool.sync(remote)
    finally:
        remote.close()
        spool.close()
    click.echo(
        f"sent {len(report.runs)} runs ({report.metrics} metric points, {report.blobs} blobs) "
        f"to {location.uri}"
    )
    for run_uuid in report.busy:
        click.echo(f"run {run_uuid} is still being logged by a live process: left for later")
    if report.failed:
        run_uuid, why = report.failed[0]
        more = f" (and {len(report.failed) - 1} more)" if len(report.failed) > 1 else ""
        raise CliError(f"run {run_uuid} was not sent and stays spooled: {why}{more}")
