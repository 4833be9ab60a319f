"""``ensign gc``: remove leftover temporary objects and blobs nothing references."""

from __future__ import annotations

import dataclasses

import click

from ensign.backend import Backend, open_backend
from ensign.cli.options import json_option, tracking_uri_option
from ensign.cli.output import format_size, print_json
from ensign.registry.sql import SqlRegistry
from ensign.storage.blobstore import BlobStore

__all__ = ["gc"]


def _stale_uploads(backend: Backend, grace: float, dry_run: bool) -> list[tuple[str, int]]:
    """Bundles pushed to a server's store and never committed (see ``ensign.server``)."""
    if not isinstance(backend.registry, SqlRegistry) or not isinstance(backend.store, BlobStore):
        return []
    from ensign.server.evaluation import collect_stale_uploads

    return collect_stale_uploads(
        backend.store, backend.registry.engine, grace_seconds=grace, dry_run=dry_run
    )


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
    """Remove leftovers older than the grace period: temporary and uncommitted uploads, blobs.

    Blobs go when no ref or version names them; bundles pushed to a server's store go when
    no push waiting to be evaluated names them.
    """
    backend = open_backend(tracking_uri)
    try:
        referenced = backend.registry.referenced_digests()
        report = backend.store.collect_garbage(
            referenced, grace_seconds=grace_period, dry_run=dry_run
        )
        uploads = _stale_uploads(backend, grace_period, dry_run)
        report = dataclasses.replace(
            report,
            temporary=report.temporary + [uri for uri, _ in uploads],
            freed_bytes=report.freed_bytes + sum(size for _, size in uploads),
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
