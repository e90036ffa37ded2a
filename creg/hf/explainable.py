"""Models creg cannot explain, refused at load in one line.

Every creg source reads relevance on the *vision tokens of the decoder's sequence*: their hidden
states, the gradients at them, the attention paid to them. Two kinds of model break that premise
and would run and print plausible, meaningless numbers, so they are refused before any sample runs:

* a decoder that reads the image through **cross-attention** (Mllama / Llama 3.2 Vision,
  Flamingo-style gated cross-attention): its sequence holds one image placeholder, not the image's
  tokens. Found from the checkpoint's config (a ``cross_attention_layers`` list, ``add_cross_attention``
  or an encoder-decoder) before the weights load, and from the loaded modules (a module class named
  ``*CrossAttention*`` inside the decoder) after;
* an adapter whose **layout does not match the image placeholder run**: the positions its
  :class:`~creg.plugins.adapter.VisionLayout` names (grid tokens plus non-spatial ones) must be exactly the
  positions of the image placeholder token in ``input_ids``
  (:func:`check_layout_matches_placeholders`, run on a probe image at load).
"""

from __future__ import annotations

from typing import Any

import torch

from creg.core.errors import RunError
from creg.plugins.adapter import VisionLayout

#: Why creg cannot explain a model whose decoder cross-attends to the image (the refusal's reason).
NOT_IN_SEQUENCE = "the vision tokens are not in the decoder sequence"


class ModelNotExplainable(RunError):
    """The model's image does not reach the decoder as tokens of its sequence (one-line message)."""


def _sub_configs(config: Any) -> list[tuple[str, Any]]:
    """``config`` and every nested config (``text_config``, ``vision_config``, ...) with its path."""
    out, todo = [], [("config", config)]
    while todo:
        path, c = todo.pop(0)
        out.append((path, c))
        for key, value in vars(c).items():
            if hasattr(value, "to_dict") and hasattr(value, "model_type") and value is not c:
                todo.append((f"{path}.{key}", value))
    return out


def cross_attention_in_config(config: Any) -> list[str]:
    """What in a transformers config says the decoder cross-attends (empty: nothing does)."""
    found = []
    for path, c in _sub_configs(config):
        layers = getattr(c, "cross_attention_layers", None)
        if layers:
            found.append(f"{path}.cross_attention_layers = {list(layers)}")
        if getattr(c, "add_cross_attention", False):
            found.append(f"{path}.add_cross_attention")
        if getattr(c, "is_encoder_decoder", False):
            found.append(f"{path}.is_encoder_decoder")
    return found


def cross_attention_modules(model: torch.nn.Module) -> list[str]:
    """Names of the modules whose class says they cross-attend (``*CrossAttention*``)."""
    return [name for name, module in model.named_modules() if "crossattention" in type(module).__name__.lower()]


def refuse_cross_attention(model_name: str, *, config: Any = None, model: torch.nn.Module | None = None) -> None:
    """Raise :class:`ModelNotExplainable` when ``config`` or ``model`` shows a cross-attending decoder."""
    found = cross_attention_in_config(config) if config is not None else []
    if not found and model is not None:
        modules = cross_attention_modules(model)
        if modules:
            more = f" and {len(modules) - 1} more" if len(modules) > 1 else ""
            found = [f"module {modules[0]} ({type(model.get_submodule(modules[0])).__name__}){more}"]
    if found:
        raise ModelNotExplainable(
            f"creg cannot explain {model_name!r}: its decoder reads the image through cross-attention "
            f"({found[0]}), so {NOT_IN_SEQUENCE}; creg explains models whose decoder sequence holds the image's tokens")


def placeholder_token_id(config: Any) -> int | None:
    """The image placeholder token of a transformers VLM config (``image_token_id`` or
    ``image_token_index``), or None when the config names none."""
    for key in ("image_token_id", "image_token_index"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


def check_layout_matches_placeholders(input_ids: torch.Tensor, layout: VisionLayout, token_id: int,
                                      model_name: str) -> None:
    """Raise :class:`ModelNotExplainable` unless the positions ``layout`` names are exactly the
    image placeholder run of ``input_ids``.

    ``input_ids``: ``(seq,)`` one row of the encoded batch. Every grid token must sit on a
    placeholder, and every placeholder must belong to a grid or to ``non_spatial_index``.
    """
    ids = input_ids.cpu()
    placeholders = set((ids == token_id).nonzero()[:, 0].tolist())
    grid = layout.token_index.long().cpu().reshape(-1).tolist()
    extra = [] if layout.non_spatial_index is None else layout.non_spatial_index.long().cpu().reshape(-1).tolist()
    off = [p for p in grid if p not in placeholders]
    unclaimed = sorted(placeholders - set(grid) - set(extra))
    if not off and not unclaimed and len(set(grid)) == len(grid):
        return
    if off:
        what = f"{len(off)} of its {len(grid)} grid positions (first {off[0]}) hold no image placeholder"
    elif unclaimed:
        what = f"{len(unclaimed)} of the {len(placeholders)} image placeholders (first at {unclaimed[0]}) belong to no grid"
    else:
        what = "it names a grid position twice"
    raise ModelNotExplainable(
        f"creg cannot explain {model_name!r} with this adapter: its vision layout does not match the image "
        f"placeholder run in the sequence ({what}), so {NOT_IN_SEQUENCE} where the layout says")
