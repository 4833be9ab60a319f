"""How the ``ensign`` command reports errors: one line on stderr, no traceback.

:class:`EnsignGroup` turns every :class:`~ensign.errors.EnsignError` into ``error: <message>``
with exit status 1, and every usage error into ``error: <message> (see '<command> --help')``
with exit status 2, as click does.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
from typing import IO, Any

import click
from click.exceptions import NoArgsIsHelpError

from ensign.errors import EnsignError, InvalidCondition

__all__ = ["CliError", "CliUsageError", "EnsignGroup"]


class CliError(click.ClickException):
    """A user error printed as one ``error: ...`` line; exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        """Print ``error: <message>`` on stderr."""
        click.echo(f"error: {self.format_message()}", file=file, err=True)


class CliUsageError(CliError):
    """A usage error (bad option or argument) printed as one line; exit status 2."""

    exit_code = 2


def _usage_error(error: click.UsageError) -> CliUsageError:
    message = error.format_message()
    if error.ctx is not None:
        message += f" (see '{error.ctx.command_path} --help')"
    return CliUsageError(message)


def _ensign_error(error: EnsignError) -> CliError:
    message = str(error) or type(error).__name__
    if isinstance(error, InvalidCondition) and hasattr(error, "reason"):
        # Its message points at the column on two more lines; one line says the same.
        message = f"{error.reason} at column {error.column} of {error.text!r}"
    message = " ".join(part.strip() for part in message.splitlines() if part.strip())
    # Library messages speak of keyword arguments; on the command line it is an option.
    message = re.sub(r"force=True(?! \(--force\))", "--force", message)
    return CliError(message)


class EnsignGroup(click.Group):
    """A command group whose user errors print one line instead of a traceback."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the group's own options, reporting usage errors on one line."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except NoArgsIsHelpError:
            raise
        except click.UsageError as error:
            raise _usage_error(error) from None

    def invoke(self, ctx: click.Context) -> Any:
        """Run the chosen command, reporting user errors on one line."""
        try:
            return super().invoke(ctx)
        except (NoArgsIsHelpError, CliError):
            raise
        except click.UsageError as error:
            raise _usage_error(error) from None
        except EnsignError as error:
            raise _ensign_error(error) from None
