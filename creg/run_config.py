"""What a run is: its configuration (``config.json``'s ``run``), and how its names resolve to
plugins (the adapter and its loading config, the sources, the benchmark).

Everything here runs before a run directory is touched, so a bad value fails before anything
is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from .adapter import VLMAdapter
from .occlusion import Operator
from .plugins import Plugins, UnknownName
from .registry import Preset
from .relevance import RelevanceSource

NO_MODEL = "none"


class RunError(RuntimeError):
    """A run cannot start or continue; the message says why and what to do."""


class RunConfig(BaseModel):
    """Everything that determines a run's results (``config.json``)."""

    adapter: str = NO_MODEL
    model: str | None = None  # overrides the preset's model (hub id or local dir)
    dtype: str | None = None
    device: str | None = None
    prompt: str | None = None
    sources: list[str] = Field(default_factory=lambda: ["oracle", "random"])
    source_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    bench: str = "synthetic"
    bench_options: dict[str, Any] = Field(default_factory=dict)
    n: int | None = None
    seed: int = 0
    data_dir: str | None = None
    k: int = Field(8, ge=1)
    sigma_r: float = Field(0.6, gt=0)
    rho_r: float = Field(2.0, gt=0)
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = 1  # "auto": creg.batching.resolve_batch_size
    cos: bool = False  # causal occlusion (Eq. 8) per sample and source, see creg.occlusion
    cos_op: Operator = "grey"
    registry: list[str] = Field(default_factory=list)

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the stored one."""
        return self.model_dump(exclude={"registry", "device"})


def resolve_adapter(config: RunConfig, plugins: Plugins, presets: dict[str, Preset]) -> tuple[type[VLMAdapter] | None, Any]:
    """(adapter class, AdapterConfig) for ``config.adapter``, or (None, None) for no model.

    The name is a preset of the registry, or an adapter plugin name used with ``--model``.
    """
    name = config.adapter
    overrides = {"model": config.model, "dtype": config.dtype, "device": config.device, "prompt": config.prompt}
    if name in presets:
        preset = presets[name]
        if preset.adapter == NO_MODEL:
            return None, None
        return plugins.load("adapter", preset.adapter), preset.adapter_config(**overrides)
    if name == NO_MODEL:
        return None, None
    if name in plugins.names("adapter"):
        if not config.model:
            raise RunError(f"adapter plugin {name!r} needs --model (a hub id or local directory), or use a preset")
        preset = Preset(adapter=name, model=config.model)
        return plugins.load("adapter", name), preset.adapter_config(**overrides)
    raise UnknownName("adapter", name, sorted(set(presets) | set(plugins.names("adapter"))))


def build_sources(config: RunConfig, plugins: Plugins, has_model: bool) -> list[RelevanceSource]:
    sources = []
    for name in config.sources:
        cls = plugins.load("source", name)
        opts = config.source_options.get(name, {})
        try:
            src = cls(**opts)
        except TypeError as e:
            raise RunError(f"source {name!r}: bad options {opts}: {e}") from None
        if cls.needs_model and not has_model:
            raise RunError(f"source {name!r} needs a model; choose one with --adapter (see `creg list`)")
        sources.append(src)
    unknown = set(config.source_options) - set(config.sources)
    if unknown:
        raise RunError(f"--source-opt names sources that are not in --source: {sorted(unknown)}")
    return sources


def build_benchmark(config: RunConfig, plugins: Plugins):
    cls = plugins.load("benchmark", config.bench)
    data_dir = Path(config.data_dir) if config.data_dir else None
    try:
        return cls(seed=config.seed, n=config.n, data_dir=data_dir, **config.bench_options)
    except TypeError as e:
        raise RunError(f"benchmark {config.bench!r}: bad options {config.bench_options}: {e}") from None
