"""``ensign artifacts ...`` and ``ensign models ...``: one factory builds both groups.

Each command opens a :class:`~ensign.client.ProjectClient` and calls its
``*_artifact_version`` or ``*_model_version`` method, chosen once per group by
:class:`VersionOps`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ensign.cli.errors import CliError
from ensign.cli.options import (
    json_option,
    paging_options,
    parse_json_object,
    project_option,
    split_list,
    tracking_uri_option,
    version_option,
)
from ensign.cli.output import (
    byte_progress,
    format_size,
    is_tty,
    print_json,
    print_record,
    print_table,
)
from ensign.client import ProjectClient
from ensign.client.pull import METADATA_FILE
from ensign.records import ArtifactRef, ArtifactVersion, StageCondition, Stages, parse_stage
from ensign.storage.hashing import Progress

__all__ = ["VersionOps", "make_versions_group", "print_version"]

_STAGES = ", ".join(s.value for s in Stages)


@dataclass(frozen=True)
class VersionOps:
    """The :class:`ProjectClient` methods of one kind of version."""

    kind: str
    register: Callable[..., ArtifactVersion]
    get: Callable[[str], ArtifactVersion]
    list_versions: Callable[[str | None, str | None, int, int], list[ArtifactVersion]]
    stage: Callable[[str, str, str | None, str | None], ArtifactVersion]
    stages: Callable[[str], list[StageCondition]]
    patch: Callable[[str, dict[str, Any]], ArtifactVersion]
    delete: Callable[[str], None]
    pull: Callable[[str, Path, bool, bool, Progress | None], Path]
    copy: Callable[[str, str | None, str | None, bool], ArtifactVersion]
    transfer: Callable[[str, str], ArtifactVersion]
    lineage: Callable[[str], list[ArtifactRef]]

    @classmethod
    def of(cls, client: ProjectClient, kind: str) -> VersionOps:
        """Return the operations of ``kind`` (``artifact`` or ``model``) on ``client``."""
        if kind == "artifact":
            return cls(
                kind,
                client.register_artifact_version,
                client.get_artifact_version,
                client.list_artifact_versions,
                client.stage_artifact_version,
                client.get_artifact_version_stages,
                client.patch_artifact_version,
                client.delete_artifact_version,
                client.pull_artifact_version,
                client.copy_artifact_version,
                client.transfer_artifact_version,
                client.get_artifact_version_lineage,
            )
        return cls(
            kind,
            client.register_model_version,
            client.get_model_version,
            client.list_model_versions,
            client.stage_model_version,
            client.get_model_version_stages,
            client.patch_model_version,
            client.delete_model_version,
            client.pull_model_version,
            client.copy_model_version,
            client.transfer_model_version,
            client.get_model_version_lineage,
        )


def _total_size(version: ArtifactVersion) -> int:
    return sum(int(entry.get("size") or 0) for entry in version.manifest.values())


def print_version(version: ArtifactVersion) -> None:
    """Print one version as a key/value view followed by its files."""
    print_record(
        [
            ("project", version.project),
            ("kind", version.kind),
            ("name", version.name),
            ("stage", version.stage),
            ("description", version.description),
            ("tags", ", ".join(version.tags) or None),
            ("content", version.content),
            ("run", version.run),
            ("artifacts", ", ".join(version.artifacts) or None),
            ("files", f"{len(version.manifest)} ({format_size(_total_size(version))})"),
            ("store", version.store_uri),
            ("evaluation", version.evaluation),
            ("created", version.created_at),
            ("updated", version.updated_at),
        ]
    )
    if version.manifest:
        click.echo()
        rows = [
            (path, format_size(entry.get("size")), str(entry.get("digest", ""))[:16])
            for path, entry in sorted(version.manifest.items())
        ]
        print_table(["path", "size", "sha256"], rows, title="files")


def _print_versions(versions: Sequence[ArtifactVersion], kind: str) -> None:
    rows = [
        (
            v.name,
            v.stage,
            ", ".join(v.tags),
            v.run,
            len(v.manifest),
            format_size(_total_size(v)),
            v.created_at,
        )
        for v in versions
    ]
    print_table(
        ["name", "stage", "tags", "run", "files", "size", "created"], rows, title=f"{kind} versions"
    )


def _print_lineage(refs: Sequence[ArtifactRef]) -> None:
    rows = [
        (
            "input" if r.is_input else "output",
            r.name,
            r.kind,
            format_size(r.size),
            (r.digest or "")[:16] or None,
            r.uri,
        )
        for r in refs
    ]
    print_table(["direction", "name", "kind", "size", "sha256", "uri"], rows, title="lineage")


def _print_stages(conditions: Sequence[StageCondition]) -> None:
    rows = [
        (c.type, c.status, c.reason, c.message, c.last_transition_time, c.last_update_time)
        for c in conditions
    ]
    print_table(["stage", "status", "reason", "message", "since", "updated"], rows, title="stages")


def _show(version: ArtifactVersion, as_json: bool, summary: str) -> None:
    if as_json:
        print_json(version)
    else:
        click.echo(summary)


def _confirmed(kind: str, project: str, version: str) -> bool:
    if not is_tty(sys.stdin):
        raise CliError(
            f"refusing to delete {kind} version {version!r} of {project!r} without "
            "confirmation: stdin is not a terminal; pass -y/--yes"
        )
    return click.confirm(f"Delete {kind} version {version!r} of {project!r}?", default=False)


def make_versions_group(kind: str, name: str) -> click.Group:
    """Build the command group for one kind of version.

    Args:
        kind: ``artifact`` or ``model``.
        name: The group's command name (``artifacts`` or ``models``).
    """
    noun = f"{kind} version"

    def client_ops(
        project: str | None, tracking_uri: str | None
    ) -> tuple[ProjectClient, VersionOps]:
        client = ProjectClient(project, tracking_uri=tracking_uri)
        return client, VersionOps.of(client, kind)

    @click.group(name=name, help=f"Register, read, stage, pull and move {noun}s.")
    def group() -> None:
        pass

    @group.command("register")
    @project_option
    @click.option(
        "-ver", "--version", "version", required=True, metavar="NAME", help="Version name."
    )
    @click.option("--description", default=None, help="Free text.")
    @click.option("--tags", default=None, metavar="A,B", help="Comma-separated tags.")
    @click.option(
        "--content", callback=parse_json_object, metavar="JSON", default=None, help="A JSON object."
    )
    @click.option("--run-uid", default=None, metavar="RUN_UUID", help="The producing run.")
    @click.option(
        "--artifacts",
        default=None,
        metavar="X,Y",
        help="The run's lineage entries to carry [default: all its outputs].",
    )
    @click.option("--force", is_flag=True, help="Replace a version of the same name.")
    @json_option
    @tracking_uri_option
    def register(
        project: str | None,
        version: str,
        description: str | None,
        tags: str | None,
        content: dict[str, Any] | None,
        run_uid: str | None,
        artifacts: str | None,
        force: bool,
        as_json: bool,
        tracking_uri: str | None,
    ) -> None:
        """Register a version, optionally carrying a run's files."""
        client, ops = client_ops(project, tracking_uri)
        with client:
            created = ops.register(
                version,
                description=description,
                tags=split_list(tags),
                content=content,
                run=run_uid,
                artifacts=split_list(artifacts),
                force=force,
            )
        _show(
            created,
            as_json,
            f"registered {noun} {created.name} in {created.project} "
            f"({len(created.manifest)} files, {format_size(_total_size(created))})",
        )

    @group.command("get")
    @project_option
    @version_option
    @json_option
    @tracking_uri_option
    def get(project: str | None, version: str, as_json: bool, tracking_uri: str | None) -> None:
        """Show a version."""
        client, ops = client_ops(project, tracking_uri)
        with client:
            found = ops.get(version)
        if as_json:
            print_json(found)
        else:
            print_version(found)

    @group.command("ls")
    @project_option
    @click.option(
        "--query", default=None, help="e.g. 'stage:production', 'tags:prod', 'name:v1|v2'."
    )
    @click.option("--sort", default=None, help="created_at, updated_at, name or stage; '-' desc.")
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
        """List versions, newest first."""
        client, ops = client_ops(project, tracking_uri)
        with client:
            found = ops.list_versions(query, sort, limit, offset)
        if as_json:
            print_json(found)
        else:
            _print_versions(found, kind)

    @group.command("stage")
    @project_option
    @version_option
    @click.option("-to", "--to", "stage", required=True, metavar="STAGE", help=_STAGES)
    @click.option("--reason", default=None, help="Why (recorded in the stage history).")
    @click.option("--message", default=None, help="Details (recorded in the stage history).")
    @json_option
    @tracking_uri_option
    def stage(
        project: str | None,
        version: str,
        stage: str,
        reason: str | None,
        message: str | None,
        as_json: bool,
        tracking_uri: str | None,
    ) -> None:
        """Move a version to a stage."""
        target = parse_stage(stage)
        client, ops = client_ops(project, tracking_uri)
        with client:
            staged = ops.stage(version, target.value, reason, message)
        _show(staged, as_json, f"{noun} {staged.name} of {staged.project} is now {staged.stage}")

    @group.command("stages")
    @project_option
    @version_option
    @json_option
    @tracking_uri_option
    def stages(project: str | None, version: str, as_json: bool, tracking_uri: str | None) -> None:
        """Show a version's stage history, oldest first."""
        client, ops = client_ops(project, tracking_uri)
        with client:
            history = ops.stages(version)
        if as_json:
            print_json(history)
        else:
            _print_stages(history)

    @group.command("update")
    @project_option
    @version_option
    @click.option("--description", default=None, help="New description.")
    @click.option("--tags", default=None, metavar="A,B", help="New tags ('' clears them).")
    @click.option(
        "--content",
        callback=parse_json_object,
        metavar="JSON",
        default=None,
        help="New JSON object.",
    )
    @click.option("--name", default=None, help="Rename the version.")
    @json_option
    @tracking_uri_option
    def update(
        project: str | None,
        version: str,
        description: str | None,
        tags: str | None,
        content: dict[str, Any] | None,
        name: str | None,
        as_json: bool,
        tracking_uri: str | None,
    ) -> None:
        """Change a version's description, tags, content or name."""
        data: dict[str, Any] = {}
        if description is not None:
            data["description"] = description
        if tags is not None:
            data["tags"] = split_list(tags)
        if content is not None:
            data["content"] = content
        if name is not None:
            data["name"] = name
        if not data:
            raise click.UsageError(
                "nothing to update: give --description, --tags, --content or --name"
            )
        client, ops = client_ops(project, tracking_uri)
        with client:
            patched = ops.patch(version, data)
        _show(patched, as_json, f"updated {noun} {patched.name} of {patched.project}")

    @group.command("delete")
    @project_option
    @version_option
    @click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
    @tracking_uri_option
    def delete(project: str | None, version: str, yes: bool, tracking_uri: str | None) -> None:
        """Delete a version (its bytes go at the next `ensign gc`)."""
        client, ops = client_ops(project, tracking_uri)
        with client:
            ops.get(version)  # a missing version is reported before any question
            if not yes and not _confirmed(kind, client.project, version):
                raise click.Abort()
            ops.delete(version)
            click.echo(f"deleted {noun} {version} of {client.project}")

    @group.command("pull")
    @project_option
    @version_option
    @click.option(
        "--path",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Folder to write the files into (created when missing).",
    )
    @click.option("--force", is_flag=True, help="Pull into a folder that already holds files.")
    @click.option("--no-artifacts", is_flag=True, help=f"Write only {METADATA_FILE}.")
    @json_option
    @tracking_uri_option
    def pull(
        project: str | None,
        version: str,
        path: Path,
        force: bool,
        no_artifacts: bool,
        as_json: bool,
        tracking_uri: str | None,
    ) -> None:
        """Write a version's files under --path, verifying every digest."""
        client, ops = client_ops(project, tracking_uri)
        with client:
            found = ops.get(version)
            total = 0 if no_artifacts else _total_size(found)
            with byte_progress(f"{kind} {found.name}", total) as progress:
                root = ops.pull(version, path, not no_artifacts, force, progress)
        files = 0 if no_artifacts else len(found.manifest)
        if as_json:
            print_json({"path": str(root), "files": files, "bytes": total})
        else:
            click.echo(
                f"pulled {noun} {found.name} of {found.project} to {root} "
                f"({files} files, {format_size(total)})"
            )

    @group.command("copy")
    @project_option
    @version_option
    @click.option("--to-project", default=None, help="Target project [default: the same].")
    @click.option("--name", default=None, help="Name of the copy [default: next vN, or same].")
    @click.option("--force", is_flag=True, help="Replace a version of the same name.")
    @json_option
    @tracking_uri_option
    def copy(
        project: str | None,
        version: str,
        to_project: str | None,
        name: str | None,
        force: bool,
        as_json: bool,
        tracking_uri: str | None,
    ) -> None:
        """Copy a version (no bytes move)."""
        client, ops = client_ops(project, tracking_uri)
        with client:
            copied = ops.copy(version, to_project, name, force)
        _show(
            copied,
            as_json,
            f"copied {noun} {version} of {client.project} to {copied.name} of {copied.project}",
        )

    @group.command("transfer")
    @project_option
    @version_option
    @click.option("--to-project", required=True, help="The project to move it to.")
    @json_option
    @tracking_uri_option
    def transfer(
        project: str | None, version: str, to_project: str, as_json: bool, tracking_uri: str | None
    ) -> None:
        """Move a version to another project, keeping its name and history."""
        client, ops = client_ops(project, tracking_uri)
        with client:
            moved = ops.transfer(version, to_project)
        _show(
            moved,
            as_json,
            f"moved {noun} {moved.name} from {client.project} to {moved.project}",
        )

    @group.command("lineage")
    @project_option
    @version_option
    @json_option
    @tracking_uri_option
    def lineage(project: str | None, version: str, as_json: bool, tracking_uri: str | None) -> None:
        """Show the producing run's inputs and the entries the version carries."""
        client, ops = client_ops(project, tracking_uri)
        with client:
            refs = ops.lineage(version)
        if as_json:
            print_json(refs)
        else:
            _print_lineage(refs)

    return group
