"""The defaults of a run, declared once: the model a run without ``--adapter`` uses, the sources a run without
``--source`` explains, the benchmark, and where a run without ``--out`` is written. The CLI, ``creg.load``,
``creg.run``, ``creg explain`` and ``creg reproduce`` all read them from here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from creg.config.run_config import NO_MODEL

#: The embedded toy model (docs/toy-model.md): the model of ``creg run``, ``creg explain`` and ``creg.load()``
#: without one named.
DEFAULT_MODEL = "qwen2vl-toy"

#: Table 1's methods, the single-layer Grad x Act baseline and the §6.3 controls: ``creg run``'s sources.
DEFAULT_SOURCES: tuple[str, ...] = ("oracle", "creg", "creg_gt", "attention_rollout", "gradnorm", "integrated_gradients",
                                    "gradcam", "gradxact", "target_box", "random_relevance", "random")

#: ``creg explain``'s source.
DEFAULT_EXPLAIN_SOURCES: tuple[str, ...] = ("creg",)

#: The embedded synthetic benchmark.
DEFAULT_BENCH = "synthetic"

#: Where runs without ``--out`` go.
RUNS_FOLDER = Path("runs")


def default_adapter(presets: Iterable[str]) -> str:
    """The toy preset when the registry has it, else no model (``none``: the model-free sources only)."""
    return DEFAULT_MODEL if DEFAULT_MODEL in set(presets) else NO_MODEL


def default_out(config: Any) -> Path:
    """``runs/BENCH-ADAPTER-HASH``: the hash covers the configuration's identity, so the same run lands in the
    same directory (and continues there)."""
    ident = json.dumps(config.identity(), sort_keys=True, default=str)
    return RUNS_FOLDER / f"{config.bench}-{config.adapter}-{hashlib.sha1(ident.encode()).hexdigest()[:8]}"
