"""The defaults of a run, declared once: the model a run without ``--adapter`` uses, the sources a run without
``--source`` explains, the benchmark, and where a run without ``--out`` is written. Every other setting's
default is its :class:`RunConfig` field's (:func:`field_default`). The CLI, ``creg.load``, ``creg.run``,
``creg explain``, ``creg reproduce`` and ``--config FILE`` all read them from here (through
:func:`creg.config.resolve.resolve_run_config`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from creg.config.run_config import NO_MODEL, RunConfig

#: The embedded toy model (docs/toy-model.md): the model of ``creg run``, ``creg explain`` and ``creg.load()``
#: without one named.
DEFAULT_MODEL = "qwen2vl-toy"

#: Table 1's methods, the single-layer Grad x Act baseline and the §6.3 controls: ``creg run``'s sources.
DEFAULT_SOURCES: tuple[str, ...] = ("oracle", "creg", "creg_gt", "attention_rollout", "gradnorm", "integrated_gradients",
                                    "gradcam", "gradxact", "target_box", "random_relevance", "random")

#: ``creg explain``'s source.
DEFAULT_EXPLAIN_SOURCES: tuple[str, ...] = ("creg",)

#: The embedded synthetic benchmark (RunConfig's ``bench``).
DEFAULT_BENCH: str = RunConfig.model_fields["bench"].default

#: The benchmarks of ``creg reproduce`` (the paper's, in its order).
DEFAULT_REPRODUCE_BENCHES: tuple[str, ...] = ("vsr", "coco_pairs")

#: Where runs without ``--out`` go.
RUNS_FOLDER = Path("runs")

#: The environment variable that names the dataset root when ``--data-dir`` (``data_dir=``) is not given.
DATA_DIR_ENV = "CREG_DATA_DIR"


def field_default(name: str) -> Any:
    """The default of :class:`RunConfig` field ``name`` (a fresh copy of a list or dict)."""
    return RunConfig.model_fields[name].get_default(call_default_factory=True)


def run_defaults() -> dict[str, Any]:
    """Every setting of a run as the entry points default it: each :class:`RunConfig` field's own default,
    except ``adapter`` (None: chosen by :func:`creg.config.resolve.choose_adapter` -- the toy model, or the
    adapter plugin ``--model``'s config.json names) and ``sources`` (:data:`DEFAULT_SOURCES`)."""
    values = {name: field_default(name) for name in RunConfig.model_fields}
    return {**values, "adapter": None, "sources": list(DEFAULT_SOURCES)}


def default_adapter(presets: Iterable[str]) -> str:
    """The toy preset when the registry has it, else no model (``none``: the model-free sources only)."""
    return DEFAULT_MODEL if DEFAULT_MODEL in set(presets) else NO_MODEL


def default_out(config: Any) -> Path:
    """``runs/BENCH-ADAPTER-HASH``: the hash covers the configuration's identity, so the same run lands in the
    same directory (and continues there)."""
    ident = json.dumps(config.identity(), sort_keys=True, default=str)
    return RUNS_FOLDER / f"{config.bench}-{config.adapter}-{hashlib.sha1(ident.encode()).hexdigest()[:8]}"


def default_reproduce_out(adapter: str) -> Path:
    """``runs/reproduce-ADAPTER``: where ``creg reproduce`` without ``--out`` writes."""
    return RUNS_FOLDER / f"reproduce-{adapter}"
