"""What the ``ensign`` command prints: JSON, tables, key/value views and byte progress bars.

Records and listings go to stdout; progress bars go to stderr and only when stderr is a
terminal, so piped output stays clean.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from ensign.storage.hashing import Progress as ProgressCallback

__all__ = [
    "byte_progress",
    "format_size",
    "format_time",
    "is_tty",
    "jsonable",
    "print_json",
    "print_record",
    "print_table",
    "stdout_console",
]

#: Width used for tables when stdout is not a terminal (so long ids are not folded).
_PIPE_WIDTH = 200


def is_tty(stream: Any) -> bool:
    """Return whether ``stream`` is a terminal (``False`` for anything that cannot say)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):
        return False


def stdout_console() -> Console:
    """Return a console on the current stdout (wide and colourless when it is not a terminal)."""
    if is_tty(sys.stdout):
        return Console(file=sys.stdout, highlight=False)
    return Console(
        file=sys.stdout, width=_PIPE_WIDTH, no_color=True, highlight=False, soft_wrap=False
    )


def jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON types: dataclasses as dicts, datetimes in ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(jsonable(value), indent=2) + "\n")
    sys.stdout.flush()


def format_time(value: datetime | None) -> str:
    """Return a timestamp as ``YYYY-MM-DD HH:MM:SS`` (UTC), or ``-`` for none."""
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S")


def format_size(size: int | None) -> str:
    """Return a byte count for people (``5.0 kB``), or ``-`` when unknown."""
    return "-" if size is None else decimal(size)


def format_value(value: Any) -> str:
    """Return a cell's text: scalars as they are, containers as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (Mapping, list, tuple)) or dataclasses.is_dataclass(value):
        if not value:
            return "-"
        return json.dumps(jsonable(value), sort_keys=True)
    return str(value)


def print_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
) -> None:
    """Print a table; an empty listing prints a one-line note instead."""
    console = stdout_console()
    if not rows:
        console.print(f"no {title or 'rows'}" if title else "nothing to show")
        return
    table = Table(title=title, show_lines=False, title_justify="left")
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(Text(format_value(cell)) for cell in row))
    console.print(table)


def print_record(fields: Sequence[tuple[str, Any]]) -> None:
    """Print one record as aligned ``key  value`` lines."""
    width = max((len(key) for key, _ in fields), default=0)
    lines = [f"{key:<{width}}  {format_value(value)}" for key, value in fields]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


@contextmanager
def byte_progress(description: str, total: int | None) -> Iterator[ProgressCallback]:
    """Show a byte progress bar on stderr while the block runs; yield the callback to feed it.

    The bar is silent when stderr is not a terminal.
    """
    console = Console(file=sys.stderr, stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not is_tty(sys.stderr),
    )
    with progress:
        task = progress.add_task(description, total=total)

        def advance(count: int) -> None:
            progress.update(task, advance=count)

        yield advance
