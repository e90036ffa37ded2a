"""Named presets: a name on the command line -> an adapter plugin + model + defaults.

In the spirit of lm-evaluation-harness's ``--model hf``: ``creg run --adapter qwen2vl-7b``
resolves ``qwen2vl-7b`` in ``registry.toml`` (shipped with creg) and in the user's own registry
files (``--registry FILE`` or ``CREG_REGISTRY=FILE[:FILE...]``; later files win).
"""

from __future__ import annotations

import os
import tomllib
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from creg.config.run_config import DTYPES, check_device, check_prompt

if TYPE_CHECKING:  # pragma: no cover - creg.plugins.adapter imports torch; `creg list` must not
    from creg.plugins.adapter import AdapterConfig

ENV_VAR = "CREG_REGISTRY"
RESOURCE_PREFIX = "resource:"


class RegistryError(ValueError):
    """A registry file is missing or invalid."""


class Preset(BaseModel):
    """One named preset."""

    model_config = ConfigDict(extra="forbid")

    adapter: str = Field(min_length=1, description="adapter plugin name, as listed by `creg list`")
    model: str = Field(description="hub id, local directory, or resource:PACKAGE/PATH")
    dtype: Literal[DTYPES] = "auto"
    device: str = "auto"
    prompt: str = "A"
    description: str = ""
    options: dict[str, Any] = Field(default_factory=dict)
    #: the benchmarks the model was trained for (empty: not declared); a run on another one warns.
    domain: list[str] = Field(default_factory=list, description="benchmarks the model was trained for; a run on "
                                                                "another one warns (out of its training domain)")
    #: where the preset was defined (filled in by the loader).
    origin: str = ""

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:

        return check_device(v)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:

        return check_prompt(v)

    def adapter_config(self, **overrides: Any) -> "AdapterConfig":
        """The adapter's load config, ``resource:`` paths resolved; None overrides are ignored."""
        from creg.plugins.adapter import AdapterConfig  # lazy: torch

        data = {"model": resolve_model(self.model), "dtype": self.dtype, "device": self.device,
                "prompt": self.prompt, "options": dict(self.options)}
        data.update({k: v for k, v in overrides.items() if v is not None})
        return AdapterConfig(**data)


def model_domain(adapter: str, model: str | None, presets: dict[str, Preset]) -> dict[str, Any] | None:
    """``{"preset", "benchmarks"}`` when ``adapter`` names a preset that declares its ``domain`` and
    ``model`` (``--model``) does not replace the preset's model; else None."""
    preset = presets.get(adapter)
    if preset is None or not preset.domain or (model is not None and model != preset.model):
        return None
    return {"preset": adapter, "benchmarks": list(preset.domain)}


def resolve_model(model: str) -> str:
    """``resource:PACKAGE/PATH`` -> the folder inside the installed package; anything else as is."""
    if not model.startswith(RESOURCE_PREFIX):
        return model
    package, _, rel = model[len(RESOURCE_PREFIX):].partition("/")
    try:
        root = files(package)
    except ModuleNotFoundError as e:
        raise RegistryError(f"model {model!r}: package {package!r} is not installed") from e
    return str(Path(str(root)) / rel)


def _read(path: Path) -> dict[str, Preset]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise RegistryError(f"registry file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise RegistryError(f"registry file {path} is not valid TOML: {e}") from None
    presets: dict[str, Preset] = {}
    unknown = sorted(set(data) - {"presets"})
    if unknown:
        raise RegistryError(f"{path}: unknown top-level key(s) {', '.join(map(repr, unknown))}; presets go in [presets.NAME] tables")
    table = data.get("presets", {})
    if not isinstance(table, dict):
        raise RegistryError(f"{path}: 'presets' must be a table of [presets.NAME] tables, got {type(table).__name__} {table!r}")
    for name, body in table.items():
        if not isinstance(body, dict):
            raise RegistryError(f"{path}: [presets.{name}] must be a table, got {type(body).__name__} {body!r}")
        try:
            presets[name] = Preset(**{**body, "origin": str(path)})
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc']))}: {str(err['msg']).removeprefix('Value error, ')}" for err in e.errors()
            )
            raise RegistryError(f"{path}: preset {name!r}: {problems}") from None
    return presets


def registry_paths(extra: Iterable[str | Path] = ()) -> list[Path]:
    """The files read, in order: the built-in one, ``CREG_REGISTRY``, then ``extra``."""
    paths = [Path(str(files("creg") / "registry.toml"))]
    env = os.environ.get(ENV_VAR, "")
    paths += [Path(p) for p in env.split(os.pathsep) if p]
    paths += [Path(p) for p in extra]
    return paths


def load_registry(extra: Iterable[str | Path] = ()) -> dict[str, Preset]:
    """All presets; a later file overrides a preset of the same name."""
    presets: dict[str, Preset] = {}
    for path in registry_paths(extra):
        presets.update(_read(path))
    return presets
