"""``ensign gc``: remove leftover temporary objects and blobs nothing references."""

from __future__ import annotations

import click

from ensign.backend import open_backend
from ensign.cli.options import json_option, tracking_uri_option
from ensign.cli.output import format_size, print_json

__all__ = ["gc"]


@click.command("gc")
@click.option(
    "--grace-period",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    metavar="SECONDS",
    help="Keep anything younger than this (uploads in flight).",
)
@click.option("--dry-run", is_flag=True, help="Report what would be removed; remove nothing.")
@json_option
@tracking_uri_option
def gc(grace_period: float, dry_run: bool, as_json: bool, tracking_uri: str | None) -> None:
    """Remove temporary objects and unreferenced blobs older than the grace period."""
    backend = open_backend(tracking_uri)
    try:
        referenced = backend.registry.referenced_digests()
        report = backend.store.collect_garbage(
            referenced, grace_seconds=grace_period, dry_run=dry_run
        )
        store = backend.store.uri
    finally:
        backend.close()
    if as_json:
        print_json(
            {
                "store": store,
                "dry_run": dry_run,
                "temporary": report.temporary,
                "blobs": report.blobs,
                "freed_bytes": report.freed_bytes,
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    for path in report.temporary:
        click.echo(f"{verb} temporary object {path}")
    for digest in report.blobs:
        click.echo(f"{verb} blob sha256:{digest}")
    freed = "would free" if dry_run else "freed"
    click.echo(
        f"{store}: {verb} {len(report.blobs)} blobs and {len(report.temporary)} temporary "
        f"objects; {freed} {report.freed_bytes} bytes ({format_size(report.freed_bytes)})"
    )
