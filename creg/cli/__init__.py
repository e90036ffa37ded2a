"""The ``creg`` command line (``creg.cli:main``)."""

from creg.cli.main import cli, main

__all__ = ["cli", "main"]
