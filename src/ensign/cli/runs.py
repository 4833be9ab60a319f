"""``ensign runs ls|get|metrics``: read tracked runs."""

from __future__ import annotations

from typing import Any

import click

from ensign.cli.options import (
    json_option,
    paging_options,
    project_option,
    split_list,
    tracking_uri_option,
)
from ensign.cli.output import print_json, print_record, print_table
from ensign.client import ProjectClient, RunClient
from ensign.errors import UnknownMetric
from ensign.jsonio import from_epoch
from ensign.records import Run

__all__ = ["print_run", "runs"]


def _environment_summary(environment: dict[str, Any]) -> dict[str, Any]:
    git = environment.get("git") or {}
    summary: dict[str, Any] = {
        "python": environment.get("python"),
        "host": environment.get("host"),
        "platform": environment.get("platform"),
        "git commit": git.get("commit"),
        "git branch": git.get("branch"),
        "git dirty": git.get("is_dirty"),
        "packages": len(environment.get("packages") or {}) or None,
    }
    return {key: value for key, value in summary.items() if value is not None}


def print_run(run: Run) -> None:
    """Print one run as a key/value view (the environment summarised; ``--json`` has it all)."""
    print_record(
        [
            ("uuid", run.uuid),
            ("project", run.project),
            ("name", run.name),
            ("status", run.status),
            ("description", run.description),
            ("started", run.started_at),
            ("ended", run.ended_at),
            ("promoted", "yes" if run.is_promoted else "no"),
            ("tags", ", ".join(run.tags) or None),
            ("params", run.params),
            ("outputs", run.outputs),
            ("environment", _environment_summary(run.environment)),
        ]
    )


@click.group("runs")
def runs() -> None:
    """List and read tracked runs."""


@runs.command("ls")
@project_option
@click.option("--query", default=None, help="e.g. 'status:succeeded', 'tags:baseline'.")
@click.option("--sort", default=None, help="started_at, ended_at, name or status; '-' desc.")
@paging_options
@json_option
@tracking_uri_option
def ls(
    project: str | None,
    query: str | None,
    sort: str | None,
    limit: int,
    offset: int,
    as_json: bool,
    tracking_uri: str | None,
) -> None:
    """List a project's runs, newest first."""
    with ProjectClient(project, tracking_uri=tracking_uri) as client:
        found = client.list_runs(query, sort, limit, offset)
    if as_json:
        print_json(found)
        return
    rows = [
        (
            r.uuid,
            r.name,
            r.status,
            r.started_at,
            r.ended_at,
            "yes" if r.is_promoted else "no",
            ", ".join(r.tags),
        )
        for r in found
    ]
    print_table(
        ["uuid", "name", "status", "started", "ended", "promoted", "tags"], rows, title="runs"
    )


@runs.command("get")
@click.argument("run_uuid")
@json_option
@tracking_uri_option
def get(run_uuid: str, as_json: bool, tracking_uri: str | None) -> None:
    """Show a run: status, params, tags, environment and times."""
    with RunClient(run_uuid, tracking_uri=tracking_uri) as client:
        run = client.get_run()
    if as_json:
        print_json(run)
    else:
        print_run(run)


@runs.command("metrics")
@click.argument("run_uuid")
@click.option("--names", default=None, metavar="A,B", help="Only these metrics.")
@json_option
@tracking_uri_option
def metrics(run_uuid: str, names: str | None, as_json: bool, tracking_uri: str | None) -> None:
    """Show a run's metrics, every logged point in step order."""
    with RunClient(run_uuid, tracking_uri=tracking_uri) as client:
        client.get_run()  # an unknown run is an error, not an empty listing
        wanted = split_list(names)
        found = client.get_metrics(wanted)
        missing = [name for name in wanted or [] if name not in found]
        if missing:
            raise UnknownMetric(missing[0], client.get_metrics().keys())
    if as_json:
        print_json(found)
        return
    rows = [
        (name, point.step, point.value, from_epoch(point.timestamp))
        for name, points in sorted(found.items())
        for point in points
    ]
    print_table(["metric", "step", "value", "timestamp"], rows, title="metrics")
