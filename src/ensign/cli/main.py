"""The ``ensign`` command: the root group, its sub-commands and the entry point.

Command tree::

    ensign [--version]
      artifacts  register|get|ls|stage|stages|update|delete|pull|copy|transfer|lineage
      models     (the same, for model versions)
      runs       ls|get|metrics
      gc
      server     the REST API (see ensign.server)
      worker     evaluation workers for a shared database
      push       push a bundle and wait for its goals
      sync       send runs spooled while the server was unreachable
      projects   create
      tokens     create
      db         upgrade

User errors print one ``error: ...`` line on stderr (see :mod:`ensign.cli.errors`).
"""

from __future__ import annotations

import click

from ensign import __version__
from ensign.cli.errors import EnsignGroup
from ensign.cli.gc import gc
from ensign.cli.push import push
from ensign.cli.runs import runs
from ensign.cli.server import db, projects, server, tokens, worker
from ensign.cli.sync import sync
from ensign.cli.versions import make_versions_group

__all__ = ["cli", "main"]


@click.group(cls=EnsignGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="ensign", message="%(prog)s %(version)s")
def cli() -> None:
    """Track runs, promote what earns it, and manage the versions it becomes."""


cli.add_command(make_versions_group("artifact", "artifacts"))
cli.add_command(make_versions_group("model", "models"))
cli.add_command(runs)
cli.add_command(gc)
cli.add_command(server)
cli.add_command(projects)
cli.add_command(tokens)
cli.add_command(db)
cli.add_command(push)
cli.add_command(worker)
cli.add_command(sync)


def main() -> None:
    """Run the ``ensign`` command (the console-script entry point)."""
    cli.main(prog_name="ensign")


if __name__ == "__main__":  # pragma: no cover - ``python -m ensign.cli.main``
    main()
