"""The ``ensign`` command line (see :mod:`ensign.cli.main`)."""

from ensign.cli.main import cli, main

__all__ = ["cli", "main"]
