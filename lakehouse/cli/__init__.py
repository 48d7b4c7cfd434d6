"""The ``lakehouse`` command line (the only lakehouse package that may import ``dagster_defs``)."""

from lakehouse.cli.main import cli, main

__all__ = ["cli", "main"]
