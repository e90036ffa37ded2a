"""What a run is: its configuration (``config.json``'s ``run``), and how its names resolve to
plugins (the adapter and its loading config, the sources, the benchmark).

Everything here runs before a run directory is touched, so a bad value fails before anything
is written: every field of :class:`RunConfig` is validated when it is built, and every plugin's
options are validated against the plugin's ``Options`` (:mod:`creg.options`) when it resolves.
Errors are :class:`RunError` / :class:`creg.options.OptionsError` with a one-line message.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .options import OptionsError, declares_options, validate_options
from .placement import DeviceMapField, MaxMemoryField
from .plugins import Plugins, UnknownName
from .prompts import resolve_template

if TYPE_CHECKING:  # pragma: no cover - imported lazily: these pull in torch
    from .adapter import VLMAdapter
    from .registry import Preset
    from .relevance import RelevanceSource

NO_MODEL = "none"
#: devices a model can be put on: auto, cpu, mps, meta or an accelerator type with an optional index.
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|meta|(cuda|xpu|npu|hpu|mtia)(:\d+)?)$")
#: the largest ``--seed`` (numpy's and torch's seeds are 32-bit unsigned).
MAX_SEED = 2**32 - 1
#: the most threads ``--threads`` accepts.
MAX_THREADS = 1024


class RunError(RuntimeError):
    """A run cannot start or continue; the message says why and what to do."""


def check_device(device: str | None) -> str | None:
    """``device`` if torch can name it (auto, cpu, cuda, cuda:1, mps, ...), else ValueError."""
    if device is None or DEVICE_PATTERN.match(device):
        return device
    raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N, mps or xpu")


def check_prompt(prompt: str | None) -> str | None:
    """``prompt`` if it is a template name (A, B, C) or a template with {ref} and {tgt}, else ValueError."""
    if prompt is not None:
        resolve_template(prompt)
    return prompt


class RunConfig(BaseModel):
    """Everything that determines a run's results (``config.json``)."""

    model_config = ConfigDict(validate_assignment=True)

    adapter: str = NO_MODEL
    model: str | None = None  # overrides the preset's model (hub id or local dir)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = None
    device: str | None = None
    prompt: str | None = None
    adapter_options: dict[str, Any] = Field(default_factory=dict)  # --adapter-opt, over the preset's options
    sources: list[str] = Field(default_factory=lambda: ["oracle", "random"], min_length=1)
    source_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    bench: str = "synthetic"
    bench_options: dict[str, Any] = Field(default_factory=dict)
    n: int | None = Field(None, ge=0)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    data_dir: str | None = None
    k: int = Field(8, ge=1, le=360)
    sigma_r: float = Field(0.6, gt=0, allow_inf_nan=False)
    rho_r: float = Field(2.0, gt=0, allow_inf_nan=False)
    batch_size: Annotated[int, Field(ge=1, le=4096)] | Literal["auto"] = 1  # "auto": creg.batching.resolve_batch_size
    cos: bool = False  # causal occlusion (Eq. 8) per sample and source, see creg.occlusion
    cos_op: Literal["grey", "blur", "patch_drop"] = "grey"
    registry: list[str] = Field(default_factory=list)
    #: torch intra-op threads; None = :func:`default_threads` (the CLI stores the number it used).
    threads: int | None = Field(None, ge=1, le=MAX_THREADS)
    #: accelerate's placement of a model over several devices (creg.placement), passed to the adapter
    #: as its options ``device_map`` / ``max_memory``; None: the whole model on ``device``.
    device_map: DeviceMapField = None
    max_memory: MaxMemoryField = None
    #: controls run after the samples (creg.controls): "blank" = the same samples with the objects removed,
    #: into RUN_DIR/blank. Not part of the identity: a control never changes the run's own records.
    controls: list[Literal["blank"]] = Field(default_factory=list)
    #: store every finished sample's relevance maps in the run (creg.store.maps), so that the report and
    #: the gallery draw heatmaps without the model; not part of the identity (results do not depend on it)
    save_maps: bool = True

    @model_validator(mode="after")
    def _placement(self) -> "RunConfig":
        mapped = self.device_map is not None or self.adapter_options.get("device_map") is not None
        if self.max_memory is not None and not mapped:
            raise ValueError("--max-memory caps what a device map puts on each device: give --device-map too "
                             "(e.g. --device-map auto)")
        if self.device_map is not None and self.device not in (None, "auto"):
            raise ValueError(f"--device {self.device} and --device-map both given: the device map places the "
                             "model (drop --device)")
        for key in ("device_map", "max_memory"):
            if getattr(self, key) is not None and key in self.adapter_options:
                raise ValueError(f"--{key.replace('_', '-')} and --adapter-opt {key}=... both given: use one")
        return self

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        return check_device(v)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str | None) -> str | None:
        return check_prompt(v)

    @field_validator("sources")
    @classmethod
    def _distinct_sources(cls, v: list[str]) -> list[str]:
        repeated = sorted({s for s in v if v.count(s) > 1})
        if repeated:
            raise ValueError(f"sources named more than once: {', '.join(repeated)}")
        return v

    @classmethod
    def checked(cls, **values: Any) -> "RunConfig":
        """Build a config; a bad value raises :class:`RunError` with one line naming the field."""
        try:
            return cls(**values)
        except ValidationError as e:
            raise RunError(config_error_message(e)) from None

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the stored one (device, threads and placement are
        checked as resolved: config.json's ``adapter.device``, ``environment.threads``, ``adapter.options``)."""
        return self.model_dump(exclude={"registry", "device", "threads", "device_map", "max_memory", "controls",
                                        "save_maps"})

    def placement(self) -> dict[str, Any]:
        """The adapter options ``--device-map`` and ``--max-memory`` set (only those given)."""
        return {k: v for k, v in (("device_map", self.device_map), ("max_memory", self.max_memory)) if v is not None}


#: RunConfig fields whose command-line flag is not --FIELD.
_FLAGS = {"n": "--limit", "sources": "--source", "registry": "--registry", "adapter_options": "--adapter-opt",
          "source_options": "--source-opt", "bench_options": "--bench-opt", "controls": "--control"}


def config_error_message(e: ValidationError) -> str:
    """A RunConfig ValidationError on one line, each field named by its command-line flag."""
    parts = []
    for err in e.errors():
        field = str(err["loc"][0]) if err.get("loc") else ""
        flag = _FLAGS.get(field, "--" + field.replace("_", "-")) if field else ""
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        value = err.get("input")
        got = f", got {value!r}" if "got" not in msg and repr(value) not in msg and not isinstance(value, dict) else ""
        parts.append(f"{flag}: {msg}{got}" if flag else msg)
    return "; ".join(parts)


# -- threads ------------------------------------------------------------------------------------------


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Threads for a run when ``--threads`` is not given.

    ``OMP_NUM_THREADS`` when set (torchrun sets it to 1 for several ranks per machine); otherwise
    at most 4, no more than this process's share of the cores (cores / ``LOCAL_WORLD_SIZE``, the
    ranks torchrun starts on this machine) and no more than the cores that the 1-minute load
    average leaves idle (at least 1): on a busy machine more threads than idle cores only fight
    each other (issue 13: a shared 2-core machine ran a default run in 473 s with torch's default
    threads and in 26 s with one).
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return min(int(env), MAX_THREADS)
    local = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    share = available_cores() // max(1, int(local)) if local.isdigit() else available_cores()
    try:
        busy = int(round(os.getloadavg()[0]))
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        busy = 0
    return max(1, min(4, share, available_cores() - busy))


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads to ``threads`` (None: :func:`default_threads`); the number used."""
    import torch

    n = threads or default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


# -- plugins ------------------------------------------------------------------------------------------


def resolve_adapter(config: RunConfig, plugins: Plugins, presets: dict[str, "Preset"]) -> tuple[type["VLMAdapter"] | None, Any]:
    """(adapter class, AdapterConfig) for ``config.adapter``, or (None, None) for no model.

    The name is a preset of the registry, or an adapter plugin name used with ``--model``. The
    preset's ``options`` updated by ``config.adapter_options`` are validated against the adapter
    class's ``Options`` (:class:`creg.options.OptionsError` naming the adapter and the field).
    """
    from .registry import Preset

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
    from .placement import require_accelerate

    try:
        require_accelerate()
    except RuntimeError as e:
        raise RunError(f"--device-map: {e}") from None


def adapter_options(name: str, cls: type, values: dict[str, Any]) -> Any:
    """What ``AdapterConfig.options`` holds for adapter class ``cls``: its validated ``Options`` instance
    (:class:`creg.options.OptionsError` naming adapter ``name`` and the field), or, for a 0.1 adapter
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
    from .benchmark import DataNotFound

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
    """Where a run's adapter, sources and benchmark come from, and the name clashes seen (config.json ``plugins``)."""

    adapter: PluginOrigin | None = None
    sources: dict[str, PluginOrigin] = Field(default_factory=dict)
    benchmark: PluginOrigin | None = None
    clashes: list[str] = Field(default_factory=list)


def plugin_provenance(config: RunConfig, plugins: Plugins, presets: dict[str, "Preset"]) -> PluginProvenance:
    """The distribution that provided each plugin of ``config``, and every clash of the plugin table."""
    adapter = None
    name = presets[config.adapter].adapter if config.adapter in presets else config.adapter
    if name != NO_MODEL and name in plugins.names("adapter"):
        adapter = PluginOrigin(**plugins.get("adapter", name).provenance)
    sources = {s: PluginOrigin(**plugins.get("source", s).provenance) for s in config.sources if s in plugins.names("source")}
    bench = PluginOrigin(**plugins.get("benchmark", config.bench).provenance) if config.bench in plugins.names("benchmark") else None
    return PluginProvenance(adapter=adapter, sources=sources, benchmark=bench, clashes=list(plugins.clashes))
