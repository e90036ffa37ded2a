"""Entry points as a third-party distribution declares them, without installing one
(``from fake_entry_points import entry_point``)."""

from __future__ import annotations

from importlib.metadata import EntryPoint


class _FakeDist:
    def __init__(self, name):
        self.name, self.version = name, "1.0"


def entry_point(name: str, value: str, dist: str) -> EntryPoint:
    """The ``creg`` group's entry point ``name = value`` of distribution ``dist`` 1.0."""
    return EntryPoint(name=name, value=value, group="creg")._for(_FakeDist(dist))
