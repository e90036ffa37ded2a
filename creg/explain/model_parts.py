"""The model's parts for analyses that change the model and run it again (``creg analyze randomize|layers``).

They need the modules an adapter declares with :meth:`creg.plugins.adapter.VLMAdapter.model_parts`
(:class:`creg.plugins.adapter.ModelParts`); :func:`model_parts` refuses an adapter that declares none.
The analyses: :mod:`creg.explain.layers` (which decoder blocks read the image) and
:mod:`creg.experiments.randomize` (the model-randomisation sanity check).
"""

from __future__ import annotations

from creg.core.errors import RunError
from creg.plugins.adapter import ModelParts, VLMAdapter


class AnalysisError(RunError):
    """The analysis cannot run on this adapter or these inputs; the message says why (one line)."""


def model_parts(adapter: VLMAdapter, what: str) -> ModelParts:
    """The adapter's :class:`ModelParts`, or :class:`AnalysisError` naming the adapter."""
    parts = adapter.model_parts() if hasattr(adapter, "model_parts") else None
    if parts is None:
        raise AnalysisError(f"{what} needs the model's decoder blocks and vision tower: adapter {type(adapter).__name__} "
                            "declares none (implement VLMAdapter.model_parts, docs/adapter-guide.md)")
    if len(parts.blocks) != adapter.num_layers:
        raise AnalysisError(f"adapter {type(adapter).__name__} declares {len(parts.blocks)} decoder blocks in model_parts "
                            f"but num_layers is {adapter.num_layers}")
    return parts
