"""The ``creg`` command line (``creg.cli:main``)."""

from .main import cli, main

__all__ = ["cli", "main"]
