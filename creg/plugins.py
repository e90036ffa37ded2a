"""Finding plugins: entry points of the ``creg`` group, loaded one by one.

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that fails to import;
here each entry point is loaded on its own, a failure is recorded (``creg list`` shows it) and
the others still load. ``CREG_STRICT_PLUGINS=1`` makes a failure fatal (for plugin authors and
CI). A name registered twice is recorded as a clash; the first registration wins.

Registered targets may be classes or ``"module:attr"`` strings, imported on first use, so that
``creg list`` does not import torch models.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, Literal

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "creg"
Kind = Literal["adapter", "source", "benchmark"]
_HOOKS: dict[str, str] = {"adapter": "register_adapters", "source": "register_sources", "benchmark": "register_benchmarks"}


class UnknownName(LookupError):
    """A name on the command line matches no registered plugin."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"valid: {', '.join(sorted(valid)) or '(none)'}"
        super().__init__(f"unknown {kind} {name!r}; {hint}")


class PluginLoadError(RuntimeError):
    """A plugin failed to load and CREG_STRICT_PLUGINS is set."""


@dataclass
class Registration:
    """One registered name."""

    kind: str
    name: str
    target: Any  # a class, or "module:attr"
    plugin: str  # the plugin module's name
    dist: str  # the distribution that provides it

    def load(self) -> Any:
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            return obj
        return self.target

    @property
    def description(self) -> str:
        if isinstance(self.target, str):
            return ""
        return getattr(self.target, "description", "") or ""


@dataclass
class PluginFailure:
    entry_point: str
    dist: str
    error: str


@dataclass
class Plugins:
    """Everything the ``creg`` entry points registered."""

    manager: pluggy.PluginManager
    registered: dict[str, dict[str, Registration]] = field(default_factory=lambda: {k: {} for k in _HOOKS})
    failures: list[PluginFailure] = field(default_factory=list)
    clashes: list[str] = field(default_factory=list)

    def names(self, kind: Kind) -> list[str]:
        return list(self.registered[kind])

    def get(self, kind: Kind, name: str) -> Registration:
        try:
            return self.registered[kind][name]
        except KeyError:
            raise UnknownName(kind, name, self.names(kind)) from None

    def load(self, kind: Kind, name: str) -> Any:
        """The class registered under ``name``."""
        return self.get(kind, name).load()

    def add_module(self, module: ModuleType | Any, *, dist: str = "(local)") -> None:
        """Register a plugin object programmatically (tests, notebooks)."""
        self.manager.register(module)
        self._collect(module, dist)

    def _collect(self, plugin: Any, dist: str) -> None:
        plugin_name = getattr(plugin, "__name__", type(plugin).__name__)
        for kind, hook in _HOOKS.items():
            impl = getattr(plugin, hook, None)
            if impl is None:
                continue

            def register(name: str, target: Any, _kind: str = kind) -> None:
                table = self.registered[_kind]
                if name in table:
                    first = table[name]
                    self.clashes.append(
                        f"{_kind} {name!r} from {dist} ({plugin_name}) ignored: already registered by "
                        f"{first.dist} ({first.plugin})"
                    )
                    return
                table[name] = Registration(_kind, name, target, plugin_name, dist)

            impl(register=register)


def _strict() -> bool:
    return os.environ.get("CREG_STRICT_PLUGINS", "").lower() in {"1", "true", "yes"}


def discover() -> Plugins:
    """Load every ``creg`` entry point, one by one, tolerating (and recording) failures."""
    pm = pluggy.PluginManager("creg")
    pm.add_hookspecs(hookspecs)
    plugins = Plugins(manager=pm)
    seen: set[str] = set()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.dist.name if e.dist else "", e.name)):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "?"
        if ep.name in seen:
            plugins.clashes.append(f"entry point {ep.name!r} of {dist} ignored: the name is taken")
            continue
        seen.add(ep.name)
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as e:  # noqa: BLE001 - one broken plugin must not break the others
            if _strict():
                raise PluginLoadError(f"plugin {ep.name!r} ({dist}) failed to load: {e!r}") from e
            plugins.failures.append(PluginFailure(ep.name, dist, f"{type(e).__name__}: {e}"))
            continue
        plugins._collect(module, dist)
    return plugins


_cached: Plugins | None = None


def get_plugins(refresh: bool = False) -> Plugins:
    """The process-wide plugin table (discovered once)."""
    global _cached
    if _cached is None or refresh:
        _cached = discover()
    return _cached
