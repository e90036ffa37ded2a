"""What ``creg list`` shows, as data (``creg list --json``): presets, plugins, load failures, clashes.

Nothing is imported beyond the entry-point modules unless ``with_options`` (then each plugin class
is loaded to read its ``Options`` model; a plugin that fails to load says so in ``"error"``). A
metric's ``"settings"`` (:meth:`creg.plugins.metric.Metric.settings`) are always there: they need its
compute function, which a plugin registers itself (or as ``"module:attr"``, imported then).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from creg.plugins.metric import metric_from

KINDS = {"adapter": "adapters", "source": "sources", "benchmark": "benchmarks", "metric": "metrics"}


def _plugin(reg, with_options: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": reg.name, "plugin": reg.plugin, "dist": reg.dist,
                           "description": reg.description or "", "metadata": dict(getattr(reg, "metadata", {}) or {})}
    if reg.kind == "metric":
        out["metadata"] = {k: v for k, v in out["metadata"].items() if not callable(v)}  # aggregate, chance: in settings
        try:
            out["settings"] = metric_from(reg).settings()
        except Exception as e:  # noqa: BLE001 - report it, keep listing
            out["error"] = f"{type(e).__name__}: {e}"
        return out
    if with_options:
        try:
            from creg.plugins.options import (  # lazy: guarded
                declares_options,
                describe_options,
            )
        except ImportError:  # a creg without declared plugin options
            return out
        try:
            cls = reg.load()
            out["options"] = describe_options(cls) if declares_options(cls) else None
        except Exception as e:  # noqa: BLE001 - report it, keep listing
            out["error"] = f"{type(e).__name__}: {e}"
    return out


def listing_data(plugins, presets, *, names: set[str] | None = None, with_options: bool = False) -> dict[str, Any]:
    """The JSON object of ``creg list --json`` (``names``: only those presets and plugins)."""
    keep = (lambda n: True) if not names else (lambda n: n in names)
    data: dict[str, Any] = {
        "presets": [{"name": name, "adapter": p.adapter, "model": p.model, "dtype": p.dtype, "device": p.device,
                     "prompt": p.prompt, "description": p.description, "options": p.options,
                     "origin": Path(p.origin).name if p.origin else ""}
                    for name, p in presets.items() if keep(name)],
    }
    for kind, key in KINDS.items():
        data[key] = [_plugin(reg, with_options) for name, reg in plugins.registered[kind].items() if keep(name)]
    data["failures"] = [{"entry_point": f.entry_point, "dist": f.dist, "error": f.error} for f in plugins.failures]
    data["clashes"] = [str(c) for c in plugins.clashes]
    return data
