"""creg: Compass Relational Evidence for vision-language models.

Turns a VLM's token attributions into a compass distribution around a reference object and
measures how well it points at the truth (the CREG paper, §3-§4).

The Python API (:mod:`creg.api`) is imported on first use, so ``import creg`` stays light::

    m = creg.load("qwen2vl-toy")
    ex = m.explain("scene.png", ref=("cup", (10, 20, 60, 80)), tgt=("bottle", (120, 30, 170, 90)))
    summary = creg.run(sources=["creg", "random"], n=20)
    frames = creg.read_run(summary["out"])
"""

import importlib

from creg.moved import install as _install_moved_paths
from creg.plugins.hookspecs import hookimpl

_install_moved_paths()  # creg's import paths before its layered rooms still import, with a DeprecationWarning

__version__ = "0.1.0"

#: name -> (module, attribute) of the lazily imported public API.
_LAZY = {
    "load": ("creg.api", "load"),
    "run": ("creg.api", "run"),
    "read_run": ("creg.api", "read_run"),
    "read_runs": ("creg.report.frames", "read_runs"),
    "Model": ("creg.api", "Model"),
    "Explanation": ("creg.api", "Explanation"),
    "SourceExplanation": ("creg.api", "SourceExplanation"),
    "ApiError": ("creg.api", "ApiError"),
    "Box": ("creg.core.sample", "Box"),
}

__all__ = ["hookimpl", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'creg' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
