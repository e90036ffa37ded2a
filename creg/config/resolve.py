"""The one resolver from what an entry point was given to a run: the values of ``creg run`` / ``explain`` /
``analyze`` / ``reproduce``, ``--config FILE``, ``creg.run`` and ``creg.load`` become a :class:`RunConfig`
(:func:`resolve_run_config`, the adapter chosen by :func:`choose_adapter` with the same rules everywhere), and
its names become plugins: the adapter and its loading config, the sources with their options, the benchmark,
and their provenance."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from pydantic import BaseModel, Field

from creg.config.defaults import DATA_DIR_ENV, default_adapter, run_defaults
from creg.config.hub import cached_file
from creg.config.placement import require_accelerate
from creg.config.presets import Preset, load_registry
from creg.config.run_config import NO_MODEL, RunConfig
from creg.core.errors import RunError
from creg.plugins.benchmark import DataNotFound
from creg.plugins.manager import Plugins, UnknownName
from creg.plugins.options import OptionsError, declares_options, validate_options

if TYPE_CHECKING:
    from creg.config.presets import Preset
    from creg.plugins.adapter import VLMAdapter
    from creg.plugins.relevance import RelevanceSource


# -- an entry point's values -> RunConfig ---------------------------------------------------------------


def model_type(model: str) -> str | None:
    """The ``model_type`` of ``model``'s ``config.json``: a local directory's, or a hub id's in the local cache
    (nothing is downloaded); None when there is none to read."""
    path = Path(model).expanduser() / "config.json"
    if not path.is_file():
        cached = cached_file(model, "config.json")
        if cached is None:
            return None
        path = Path(cached)
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def _plain(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def infer_adapter(model: str, adapters: Iterable[str]) -> str:
    """The adapter plugin that loads ``model`` (a local directory or a cached hub id): the one named like its
    ``config.json``'s ``model_type`` (case, ``_`` and ``-`` aside); RunError (one line) when none is."""
    adapters = sorted(adapters)
    kind = model_type(model)
    if kind:
        for name in adapters:
            if _plain(name) == _plain(kind):
                return name
    raise RunError(f"cannot tell which adapter plugin loads {model!r}{f' (model_type {kind!r})' if kind else ''}: "
                   f"name it (--adapter NAME; Python: adapter=NAME), one of {adapters}")


def choose_adapter(adapter: str | None, model: str | None, presets: Iterable[str], adapters: Iterable[str]) -> str:
    """``RunConfig.adapter`` for an entry point's adapter and model: ``adapter`` when given (a preset, an adapter
    plugin or ``none``); else, with a ``model``, the adapter plugin its ``config.json`` names
    (:func:`infer_adapter`); else the default (:func:`creg.config.defaults.default_adapter`)."""
    if adapter is not None:
        return adapter
    if model is not None:
        return infer_adapter(model, adapters)
    return default_adapter(presets)


def resolve_run_config(values: Mapping[str, Any], plugins: Plugins, presets: Mapping[str, "Preset"] | None = None) -> RunConfig:
    """The :class:`RunConfig` of an entry point's ``values`` (RunConfig field names). A field absent or None
    takes the entry points' default (:func:`creg.config.defaults.run_defaults`); the adapter is chosen by
    :func:`choose_adapter`, ``data_dir`` falls back to ``$CREG_DATA_DIR``. ``presets``: the registry (read from
    ``values["registry"]`` when not given). A bad value raises :class:`RunError` with one line naming its flag."""
    unknown = sorted(set(values) - set(RunConfig.model_fields))
    if unknown:
        raise RunError(f"unknown setting(s) {unknown}; the settings are {sorted(RunConfig.model_fields)}")
    given = {k: v for k, v in values.items() if v is not None}
    fields = {**run_defaults(), **given}
    if presets is None:
        presets = load_registry(fields["registry"])
    fields["adapter"] = choose_adapter(fields["adapter"], fields["model"], presets, plugins.names("adapter"))
    if fields["data_dir"] is None:
        fields["data_dir"] = os.environ.get(DATA_DIR_ENV) or None
    if fields["data_dir"] is not None:
        fields["data_dir"] = str(fields["data_dir"])
    return RunConfig.checked(**fields)


# -- names -> plugins ----------------------------------------------------------------------------------


def resolve_adapter(config: RunConfig, plugins: Plugins, presets: dict[str, "Preset"]) -> tuple[type["VLMAdapter"] | None, Any]:
    """(adapter class, AdapterConfig) for ``config.adapter``, or (None, None) for no model.

    The name is a preset of the registry, or an adapter plugin name used with ``--model``. The
    preset's ``options`` updated by ``config.adapter_options`` are validated against the adapter
    class's ``Options`` (:class:`creg.plugins.options.OptionsError` naming the adapter and the field).
    """

    name = config.adapter
    overrides = {"model": config.model, "dtype": config.dtype, "device": config.device, "prompt": config.prompt}
    if name in presets:
        preset = presets[name]
        if preset.adapter == NO_MODEL:
            if config.adapter_options or config.placement():
                raise RunError(f"{_model_flag(config)} given but {name!r} runs no model")
            return None, None
        plugin = preset.adapter
    elif name == NO_MODEL:
        if config.adapter_options or config.placement():
            raise RunError(f"{_model_flag(config)} given but --adapter none runs no model")
        return None, None
    elif name in plugins.names("adapter"):
        if not config.model:
            raise RunError(f"adapter plugin {name!r} needs --model (a hub id or local directory), or use a preset")
        preset, plugin = Preset(adapter=name, model=config.model), name
    else:
        raise UnknownName("adapter", name, sorted(set(presets) | set(plugins.names("adapter"))), plugins.failures)
    cls = plugins.load("adapter", plugin)
    check_placement(plugin, cls, config.placement())
    options = adapter_options(plugin, cls, {**preset.options, **config.adapter_options, **config.placement()})
    if declares_options(cls) and getattr(options, "device_map", None) is not None:
        check_placement(plugin, cls, {"device_map": options.device_map})  # e.g. --adapter-opt device_map=auto
    return cls, preset.adapter_config(**overrides).model_copy(update={"options": options})


def _model_flag(config: RunConfig) -> str:
    """The first model option given, by its flag (for "... given but X runs no model")."""
    given = ["--adapter-opt"] if config.adapter_options else []
    given += [f"--{k.replace('_', '-')}" for k in config.placement()]
    return given[0]


def check_placement(name: str, cls: type, placement: dict[str, Any]) -> None:
    """RunError (one line) if adapter ``name`` (class ``cls``) cannot take ``placement``
    (``device_map`` / ``max_memory``): its ``Options`` lack the field, or accelerate is missing."""
    if not placement:
        return
    fields = getattr(getattr(cls, "Options", None), "model_fields", {}) if declares_options(cls) else {}
    for key in placement:
        if key not in fields:
            flag = f"--{key.replace('_', '-')}"
            raise RunError(f"{flag}: adapter {name!r} ({cls.__name__}) has no {key} option: it loads its model on "
                           "one device (--device); adapters built on creg.hf.HFAdapter take a device map")

    try:
        require_accelerate()
    except RuntimeError as e:
        raise RunError(f"--device-map: {e}") from None


def adapter_options(name: str, cls: type, values: dict[str, Any]) -> Any:
    """What ``AdapterConfig.options`` holds for adapter class ``cls``: its validated ``Options`` instance
    (:class:`creg.plugins.options.OptionsError` naming adapter ``name`` and the field), or, for a 0.1 adapter
    that declares none, the plain dict (it reads and checks its own)."""
    if declares_options(cls):
        return validate_options("adapter", name, cls, values)
    return dict(values)


def build_source(name: str, cls: type["RelevanceSource"], options: dict[str, Any]) -> "RelevanceSource":
    """One source, its options validated first; any error in construction is an OptionsError naming it."""
    if declares_options(cls):
        validate_options("source", name, cls, options)
    try:
        return cls(**options)
    except OptionsError:
        raise
    except (TypeError, ValueError) as e:
        raise OptionsError(f"source {name!r}: bad options {options}: {e}") from None


def build_sources(config: RunConfig, plugins: Plugins, has_model: bool) -> list["RelevanceSource"]:
    unknown = set(config.source_options) - set(config.sources)
    if unknown:
        raise RunError(f"--source-opt names sources that are not in --source: {sorted(unknown)}")
    sources = []
    for name in config.sources:
        reg = plugins.get("source", name)
        cls = reg.load()
        needs_model = getattr(cls, "needs_model", reg.metadata.get("needs_model", True))
        src = build_source(name, cls, config.source_options.get(name, {}))
        if needs_model and not has_model:
            raise RunError(f"source {name!r} needs a model; choose one with --adapter (see `creg list`)")
        sources.append(src)
    return sources


def build_benchmark(config: RunConfig, plugins: Plugins):
    """The benchmark, its options validated (OptionsError naming it); data is not read yet."""

    cls = plugins.load("benchmark", config.bench)
    data_dir = Path(config.data_dir) if config.data_dir else None
    if declares_options(cls):
        validate_options("benchmark", config.bench, cls, config.bench_options)
    try:
        return cls(seed=config.seed, n=config.n, data_dir=data_dir, **config.bench_options)
    except (OptionsError, DataNotFound):
        raise
    except (TypeError, ValueError) as e:
        raise OptionsError(f"benchmark {config.bench!r}: bad options {config.bench_options}: {e}") from None


# -- provenance ---------------------------------------------------------------------------------------


class PluginOrigin(BaseModel):
    """Which plugin module and distribution provided a name."""

    name: str
    plugin: str
    dist: str


class PluginProvenance(BaseModel):
    """Where a run's adapter, sources, benchmark and metrics come from, and the name clashes seen (config.json ``plugins``)."""

    adapter: PluginOrigin | None = None
    sources: dict[str, PluginOrigin] = Field(default_factory=dict)
    benchmark: PluginOrigin | None = None
    #: every registered metric: each is computed into the run's summary
    metrics: dict[str, PluginOrigin] = Field(default_factory=dict)
    clashes: list[str] = Field(default_factory=list)


def plugin_provenance(config: RunConfig, plugins: Plugins, presets: dict[str, "Preset"]) -> PluginProvenance:
    """The distribution that provided each plugin of ``config``, and every clash of the plugin table."""
    adapter = None
    name = presets[config.adapter].adapter if config.adapter in presets else config.adapter
    if name != NO_MODEL and name in plugins.names("adapter"):
        adapter = PluginOrigin(**plugins.get("adapter", name).provenance)
    sources = {s: PluginOrigin(**plugins.get("source", s).provenance) for s in config.sources if s in plugins.names("source")}
    bench = PluginOrigin(**plugins.get("benchmark", config.bench).provenance) if config.bench in plugins.names("benchmark") else None
    metrics = {m: PluginOrigin(**plugins.get("metric", m).provenance) for m in plugins.names("metric")}
    return PluginProvenance(adapter=adapter, sources=sources, benchmark=bench, metrics=metrics, clashes=list(plugins.clashes))
