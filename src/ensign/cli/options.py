"""Options shared by the ``ensign`` commands, and the parameter types they use."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = [
    "json_option",
    "paging_options",
    "parse_json_object",
    "project_option",
    "split_list",
    "tracking_uri_option",
    "version_option",
]

F = TypeVar("F", bound=Callable[..., Any])


def parse_json_object(
    ctx: click.Context | None, param: click.Parameter | None, value: str | None
) -> dict[str, Any] | None:
    """Parse a JSON object given on the command line, e.g. ``--content '{"acc": 0.9}'``.

    Raises:
        click.BadParameter: naming the option, when ``value`` is not a JSON object.
    """
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise click.BadParameter(
            f"not valid JSON ({error.msg} at line {error.lineno} column {error.colno})",
            ctx=ctx,
            param=param,
        ) from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(
            f"must be a JSON object, got {type(parsed).__name__}", ctx=ctx, param=param
        )
    return parsed


def split_list(value: str | None) -> list[str] | None:
    """Split ``a,b`` into ``["a", "b"]`` (blanks dropped); ``None`` stays ``None``."""
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def tracking_uri_option(func: F) -> F:
    """Add ``--tracking-uri`` (else ``ENSIGN_TRACKING_URI``, else ``./.ensign``)."""
    return click.option(
        "--tracking-uri",
        metavar="URI",
        default=None,
        help="Where metadata lives: a folder, sqlite:///FILE, postgresql+psycopg://... "
        "[default: ENSIGN_TRACKING_URI, else ./.ensign]",
    )(func)


def project_option(func: F) -> F:
    """Add ``-p/--project`` (else ``ENSIGN_PROJECT``, else ``default``)."""
    return click.option(
        "-p",
        "--project",
        metavar="PROJECT",
        default=None,
        help="Project key, 'name' or 'owner/name' [default: ENSIGN_PROJECT, else 'default']",
    )(func)


def json_option(func: F) -> F:
    """Add ``--json``: print machine-readable JSON on stdout."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout."
    )(func)


def version_option(func: F) -> F:
    """Add the required ``-ver/--version`` naming a version."""
    return click.option(
        "-ver", "--version", "version", required=True, metavar="NAME", help="Version name."
    )(func)


def paging_options(func: F) -> F:
    """Add ``--limit`` and ``--offset`` to a listing command."""
    func = click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)(func)
    return click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True)(func)
