"""The modules of a transformers VLM that creg's model analyses change (:class:`creg.adapter.ModelParts`).

The decoder blocks come from :func:`creg.hf.decoder.find_decoder`; the vision tower is every
module of the usual names under the model and its inner ``model`` (``visual`` in Qwen2-VL and
Qwen2.5-VL, which holds the merger; ``vision_tower`` and ``multi_modal_projector`` in LLaVA;
``vision_model`` and ``mlp1`` in InternVL). Decoder blocks receive their mask as ``attention_mask``.
"""

from __future__ import annotations

from torch import nn

from creg.adapter import ModelParts

#: attribute names of vision encoders and of the projectors that feed their output to the decoder.
VISION_NAMES = ("visual", "vision_tower", "vision_model", "vision_encoder", "multi_modal_projector", "mlp1")


def vision_tower(model: nn.Module) -> nn.ModuleList | None:
    """The vision encoder and projector modules of ``model`` (found by name), or None."""
    found: list[nn.Module] = []
    for owner in (model, getattr(model, "model", None)):
        if not isinstance(owner, nn.Module):
            continue
        for name in VISION_NAMES:
            m = getattr(owner, name, None)
            if isinstance(m, nn.Module) and not any(m is f for f in found):
                found.append(m)
    return nn.ModuleList(found) if found else None


def hf_model_parts(model: nn.Module, blocks: nn.ModuleList) -> ModelParts:
    return ModelParts(blocks=list(blocks), vision=vision_tower(model), mask_kwarg="attention_mask")
