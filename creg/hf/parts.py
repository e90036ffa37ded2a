"""The modules of a transformers VLM that creg's model analyses change (:class:`creg.plugins.adapter.ModelParts`).

The decoder blocks come from :func:`creg.hf.decoder.find_decoder`; the vision tower is every
module of the usual names under the model and its inner ``model`` (``visual`` in Qwen2-VL and
Qwen2.5-VL, which holds the merger; ``vision_tower`` and ``multi_modal_projector`` in LLaVA;
``vision_model`` and ``mlp1`` in InternVL). Decoder blocks receive their mask as ``attention_mask``
(eager and sdpa kernels; a flash-attention kernel takes no dense mask, so none is declared).
"""

from __future__ import annotations

from torch import nn

from creg.plugins.adapter import ModelParts

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


def attention_kernels(model: nn.Module) -> set[str]:
    """The attention implementations of ``model``'s config and of its text config."""
    config = getattr(model, "config", None)
    found = {str(getattr(config, "_attn_implementation", "") or "")}
    text = config.get_text_config() if hasattr(config, "get_text_config") else None
    found.add(str(getattr(text, "_attn_implementation", "") or ""))
    return found - {""}


def hf_model_parts(model: nn.Module, blocks: nn.ModuleList) -> ModelParts:
    """Flash-attention kernels take no dense mask: with one, no mask keyword is declared (the knock-out is refused)."""
    flash = any("flash" in k for k in attention_kernels(model))
    return ModelParts(blocks=list(blocks), vision=vision_tower(model), mask_kwarg=None if flash else "attention_mask")
