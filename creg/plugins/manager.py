"""Finding plugins: entry points of the ``creg`` group, loaded one by one, called through pluggy.

* Each entry point is loaded on its own: a failure is recorded (``creg list`` shows it) and the
  others still load. ``CREG_STRICT_PLUGINS=1`` makes a failure fatal (for plugin authors and CI).
* Hooks are called through pluggy (``pm.subset_hook_caller``, one plugin at a time so that each
  name is known to come from its plugin): a function without ``@creg.hookimpl`` is never called.
* ``register(name, target, *, description="", **metadata)``: ``target`` is a class or a
  ``"module:attr"`` string imported on first use; the description and capability metadata
  (``needs_model`` for sources, ``needs_data`` for benchmarks) are given here, so ``creg list``
  and ``creg --help`` import no model code. A loaded target is checked against its base class,
  and gets the registration's description as its ``description`` unless it declares its own.
  A metric registers its compute function the same way, its settings as metadata
  (``register(name, compute, *, higher_is_better, ...)``, :mod:`creg.plugins.metric`).
* Clashes: creg's own distribution is loaded first and a name registered twice keeps its first
  registration, so creg's own names always win; every clash is recorded (``creg list`` shows it,
  ``creg run`` warns and stores it in ``config.json``). A plugin command named like a core command,
  or like one another plugin added first, is refused (:class:`CommandGuard`).
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType, ModuleType
from typing import Any, Callable, Literal, Sequence

import pluggy

from creg.plugins import hookspecs

ENTRY_POINT_GROUP = "creg"
#: creg's own distribution: loaded first, so its names win a clash.
OWN_DISTRIBUTION = "creg"
Kind = Literal["adapter", "source", "benchmark", "metric"]
_HOOKS: dict[str, str] = {"adapter": "register_adapters", "source": "register_sources", "benchmark": "register_benchmarks",
                          "metric": "register_metrics"}
#: the base class every registered target of a kind must subclass ("module:attr", imported on load).
#: (a metric registers a function, not a class: :func:`creg.plugins.metric.metric_from` makes it a Metric)
BASE_CLASSES: dict[str, str] = {
    "adapter": "creg.plugins.adapter:VLMAdapter",
    "source": "creg.plugins.relevance:RelevanceSource",
    "benchmark": "creg.plugins.benchmark:Benchmark",
}


#: what a registered name may be: it goes into command lines (``--source a,b``, ``--source-opt NAME.KEY=V``) and
#: file names, so no path separators, spaces or commas; a source name has no dot (``--source-opt`` splits at it).
NAME_PATTERNS: dict[str, re.Pattern] = {
    "adapter": re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
    "source": re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
    "benchmark": re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
    # a metric's name is a key of summary.json (``NAME``, ``NAME_ci``) and a column of the exports
    "metric": re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
}


class UnknownName(LookupError):
    """A name on the command line matches no registered plugin."""

    def __init__(self, kind: str, name: str, valid: list[str], failures: "Sequence[PluginFailure]" = ()):
        self.kind, self.name, self.valid = kind, name, valid
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"valid: {', '.join(sorted(valid)) or '(none)'}"
        # a plugin that failed to import may be the one that registers this name: say so here
        broken = "; ".join(f"plugin {f.entry_point} ({f.dist}) failed to import: {' '.join(f.error.split())[:200]}"
                           for f in failures)
        super().__init__(f"unknown {kind} {name!r}; {hint}" + (f" ({broken})" if broken else ""))


class PluginLoadError(RuntimeError):
    """A plugin failed to load (always for a registered target; for an entry point when CREG_STRICT_PLUGINS is set)."""


class PluginTypeError(PluginLoadError):
    """A registered target is not a subclass of its kind's base class."""


def _import_target(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in (attr.split(".") if attr else []):
        obj = getattr(obj, part)
    return obj


@dataclass
class Registration:
    """One registered name, with what its plugin said about it at registration."""

    kind: str
    name: str
    target: Any  # a class, or "module:attr"
    plugin: str  # the plugin module's name
    dist: str  # the distribution that provides it, "name version"
    registered_description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        """The registered class, checked against its kind's base class, or a metric's compute function, checked
        callable (:class:`PluginLoadError` otherwise).

        A class that declares no ``description`` of its own gets the registration's: the description
        is written once, in the ``register`` call, where ``creg list`` reads it without importing."""
        where = f"{self.kind} {self.name!r} ({self.dist}, {self.plugin})"
        try:
            obj = _import_target(self.target) if isinstance(self.target, str) else self.target
        except (ImportError, AttributeError) as e:
            raise PluginLoadError(f"{where}: cannot import {self.target!r}: {type(e).__name__}: {e}") from e
        if self.kind not in BASE_CLASSES:  # a metric: the target is its compute function
            if not callable(obj) or isinstance(obj, type):
                raise PluginTypeError(f"{where}: registered {type(obj).__name__} {obj!r:.60}, which is not a function "
                                      "of the records")
            return obj
        base = _import_target(BASE_CLASSES[self.kind])
        if not (isinstance(obj, type) and issubclass(obj, base)):
            got = obj.__qualname__ if isinstance(obj, type) else type(obj).__name__ + " instance"
            raise PluginTypeError(f"{where}: registered {got}, which is not a subclass of {base.__module__}.{base.__qualname__}")
        if self.registered_description and not obj.__dict__.get("description"):
            obj.description = self.registered_description  # written once, at registration (docs/plugins.md)
        return obj

    @property
    def description(self) -> str:
        """The description given at registration, else a class target's own ``description`` (never imports)."""
        if self.registered_description:
            return self.registered_description
        if isinstance(self.target, str):
            return ""
        return getattr(self.target, "description", "") or ""

    @property
    def provenance(self) -> dict[str, str]:
        """Where the name comes from: ``{"name", "plugin", "dist"}`` (stored in config.json)."""
        return {"name": self.name, "plugin": self.plugin, "dist": self.dist}


@dataclass
class PluginFailure:
    entry_point: str
    dist: str
    error: str


class CommandGuard:
    """What ``register_commands(cli)`` receives: ``add_command`` refuses names that are taken.

    A core command's name (``run``, ``list``, ...) or one that another plugin added first is refused
    with a message naming the plugin; ``commands`` is a read-only view of the commands so far.
    """

    def __init__(self, group: Any, protected: set[str], on_refused: Callable[[str], None], owner: str):
        self._group, self._protected, self._on_refused, self._owner = group, protected, on_refused, owner

    @property
    def commands(self):
        return MappingProxyType(dict(self._group.commands))

    @property
    def name(self) -> str:
        return self._group.name

    def add_command(self, cmd: Any, name: str | None = None) -> None:
        name = name or cmd.name
        if name in self._protected or name in self._group.commands:
            kind = "a core command" if name in self._protected else "a command another plugin added"
            self._on_refused(f"command {name!r} from {self._owner} refused: {name!r} is {kind}")
            return
        self._group.add_command(cmd, name)


@dataclass
class Plugins:
    """Everything the ``creg`` entry points registered."""

    manager: pluggy.PluginManager
    registered: dict[str, dict[str, Registration]] = field(default_factory=lambda: {k: {} for k in _HOOKS})
    failures: list[PluginFailure] = field(default_factory=list)
    clashes: list[str] = field(default_factory=list)
    #: plugin module name -> distribution ("name version").
    dists: dict[str, str] = field(default_factory=dict)

    def names(self, kind: Kind) -> list[str]:
        return list(self.registered[kind])

    def get(self, kind: Kind, name: str) -> Registration:
        try:
            return self.registered[kind][name]
        except KeyError:
            raise UnknownName(kind, name, self.names(kind), self.failures) from None

    def load(self, kind: Kind, name: str) -> Any:
        """The class registered under ``name``, checked against its base class."""
        return self.get(kind, name).load()

    def add_module(self, module: ModuleType | Any, *, dist: str = "(local)") -> None:
        """Register a plugin object programmatically (tests, notebooks)."""
        name = self.manager.register(module)
        self._collect(module, name, dist)

    def _collect(self, plugin: Any, plugin_name: str, dist: str) -> None:
        """Call ``plugin``'s hookimpls (only those, through pluggy) and record what they register."""
        self.dists[plugin_name] = dist
        module_name = getattr(plugin, "__name__", plugin_name)
        others = [p for p in self.manager.get_plugins() if p is not plugin]
        for kind, hook in _HOOKS.items():
            caller = self.manager.subset_hook_caller(hook, remove_plugins=others)

            def register(name: str, target: Any, *, description: str = "", _kind: str = kind, **metadata: Any) -> None:
                if not isinstance(name, str) or not NAME_PATTERNS[_kind].match(name):
                    self.failures.append(PluginFailure(plugin_name, dist, (
                        f"{_kind} name {name!r} refused: use up to 64 letters, digits, '_' and '-'"
                        + ("" if _kind in ("source", "metric") else " and '.'"))))
                    return
                table = self.registered[_kind]
                if name in table:
                    first = table[name]
                    self.clashes.append(
                        f"{_kind} {name!r} from {dist} ({module_name}) ignored: already registered by "
                        f"{first.dist} ({first.plugin})"
                    )
                    return
                table[name] = Registration(_kind, name, target, module_name, dist, str(description or ""), dict(metadata))

            caller(register=register)

    def mount_commands(self, group: Any, log: Callable[[str], None]) -> None:
        """Let every plugin add its commands to ``group``; names of commands already there are protected."""
        core = set(group.commands)
        for plugin_name, plugin in list(self.manager.list_name_plugin()):
            dist = self.dists.get(plugin_name, "?")
            others = [p for p in self.manager.get_plugins() if p is not plugin]
            caller = self.manager.subset_hook_caller("register_commands", remove_plugins=others)

            def refused(message: str) -> None:
                self.clashes.append(message)
                log(f"creg: {message}")

            caller(cli=CommandGuard(group, core, refused, f"{dist} ({getattr(plugin, '__name__', plugin_name)})"))


def _strict() -> bool:
    return os.environ.get("CREG_STRICT_PLUGINS", "").lower() in {"1", "true", "yes"}


def _order(ep) -> tuple[int, str, str]:
    dist = ep.dist.name if ep.dist else ""
    return (0 if dist == OWN_DISTRIBUTION else 1, dist, ep.name)


def discover() -> Plugins:
    """Load every ``creg`` entry point, creg's own first, one by one, tolerating (and recording) failures."""
    pm = pluggy.PluginManager("creg")
    pm.add_hookspecs(hookspecs)
    plugins = Plugins(manager=pm)
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=_order):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "?"
        if pm.has_plugin(ep.name):
            plugins.clashes.append(f"entry point {ep.name!r} of {dist} ignored: the name is taken by {plugins.dists.get(ep.name, '?')}")
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
            plugins._collect(module, ep.name, dist)
        except Exception as e:  # noqa: BLE001 - one broken plugin must not break the others
            if pm.has_plugin(ep.name):
                pm.unregister(name=ep.name)
            if _strict():
                raise PluginLoadError(f"plugin {ep.name!r} ({dist}) failed to load: {e!r}") from e
            plugins.failures.append(PluginFailure(ep.name, dist, f"{type(e).__name__}: {e}"))
    return plugins


_cached: Plugins | None = None


def get_plugins(refresh: bool = False) -> Plugins:
    """The process-wide plugin table (discovered once)."""
    global _cached
    if _cached is None or refresh:
        _cached = discover()
    return _cached
