"""The resolved configuration of a run (``config.json``) and what a resume must share with it.

``creg run`` names things (``--adapter qwen2vl-7b``, ``--device auto``); what produced the
numbers is what those names resolved to: the adapter class, the preset's model, dtype, prompt
and options after ``--registry`` files and overrides, the device and dtype that ``auto`` means
on this machine, and the versions of creg, torch and transformers and torch's thread count.
All of it is written to ``config.json``; a resume whose resolution differs in any of them is
refused, so one run directory never mixes two models or two numerical set-ups.
"""

from __future__ import annotations

import platform
from typing import Any

from creg import __version__
from creg.config.run_config import RunConfig
from creg.store.schema import SCHEMA_VERSION


def resolved_device(device: str | None) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu`` (the rule adapters follow)."""
    import torch  # lazy: torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolved_dtype(dtype: str | None, device: str) -> str:
    """``auto`` -> bfloat16 on a GPU, float32 on the CPU (the rule adapters follow)."""
    if dtype in (None, "auto"):
        return "bfloat16" if device.split(":")[0] == "cuda" else "float32"
    return dtype


def environment() -> dict[str, Any]:
    """Versions and the thread count: what changes floating-point results without changing the command."""
    import torch  # lazy: torch


    try:
        import transformers  # lazy: guarded

        tf = transformers.__version__
    except ImportError:  # pragma: no cover - a dependency of creg
        tf = None
    return {"creg": __version__, "torch": torch.__version__, "transformers": tf,
            "python": platform.python_version(), "threads": torch.get_num_threads()}


def describe_run(config, adapter_cls: type | None, adapter_config, benchmark: dict[str, Any]) -> dict[str, Any]:
    """The ``config.json`` document of a run: :class:`creg.config.run_config.RunConfig` ``config`` as given,
    the adapter it resolved to (class, model, dtype, device, prompt, options), the benchmark's
    description, and the environment."""
    adapter = None
    if adapter_cls is not None and adapter_config is not None:
        cfg = adapter_config.model_dump()
        device = resolved_device(cfg.get("device"))
        adapter = {**cfg, "class": f"{adapter_cls.__module__}:{adapter_cls.__qualname__}",
                   "device": device, "dtype": resolved_dtype(cfg.get("dtype"), device),
                   "requested": {"device": cfg.get("device"), "dtype": cfg.get("dtype")}}

    return {
        "schema_version": SCHEMA_VERSION,
        "creg_version": __version__,
        "run": config.model_dump(),
        "adapter": adapter,
        "benchmark": benchmark,
        "environment": environment(),
    }


#: Fields of the environment a resume must share (``python`` is recorded, not checked).
CHECKED_ENVIRONMENT = ("creg", "torch", "transformers", "threads")
#: Fields of the resolved adapter a resume must share.
CHECKED_ADAPTER = ("class", "model", "dtype", "device", "prompt", "options")


def identity(doc: dict[str, Any]) -> dict[str, Any]:
    """The flat ``{field: value}`` a resumed run must share with the stored one: every
    :meth:`RunConfig.identity` field, ``adapter.*`` (what the names resolved to) and ``env.*``."""

    out: dict[str, Any] = dict(RunConfig(**doc.get("run", {})).identity())
    adapter = doc.get("adapter") or {}
    for key in CHECKED_ADAPTER:
        out[f"adapter.{key}"] = adapter.get(key)
    env = doc.get("environment") or {}
    for key in CHECKED_ENVIRONMENT:
        out[f"env.{key}"] = env.get(key)
    return out


def resume_differences(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``["k: 8 -> 4", "adapter.model: 'a' -> 'b'", ...]``; empty when ``new`` may continue ``stored``."""
    old, cur = identity(stored), identity(new)
    return [f"{k}: {old.get(k)!r} -> {cur.get(k)!r}" for k in cur if old.get(k) != cur.get(k)]
