"""Hooks that cut the autograd graph at the earliest requested layer and capture what CREG needs.

A forward pass runs under ``torch.no_grad()``. The hook at the *gradient root* -- the vision
encoder's last block when vision activations are requested, else the input of the decoder
block whose input is the earliest requested hidden-state index, else the final norm (index -1
alone) -- switches gradients on and hands the rest of the model a detached leaf that requires
grad. So nothing below the root keeps activations for backward, and everything above it is in
the graph. Later requested layers are captured as they flow past (the very tensors the next
block consumes, so ``torch.autograd.grad(logits, hidden[l])`` works). Each decoder block's
call arguments (attention mask, M-RoPE cos/sin, ...) from the root upward are kept for
replaying the decoder (:meth:`Qwen2VLAdapter.logits_from_layer`). Attention maps are passed to
a callback as each layer computes them and are not kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from .layout import windows_to_raster


@dataclass
class ReplayState:
    """What :meth:`Qwen2VLAdapter.logits_from_layer` needs to rerun the top of the decoder."""

    #: decoder block index -> keyword arguments it was called with (tensors batch-first, ``b``).
    block_kwargs: dict[int, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 0


def repeat_batch(value: Any, r: int, b: int) -> Any:
    """``value`` with every batch-first tensor (leading dim ``b``) stacked ``r`` times along dim 0,
    so that row ``i`` of the result belongs to sample ``i % b``."""
    if r == 1:
        return value
    if isinstance(value, torch.Tensor):
        return value.repeat(r, *([1] * (value.dim() - 1))) if value.dim() and value.shape[0] == b else value
    if isinstance(value, tuple):
        return tuple(repeat_batch(v, r, b) for v in value)
    if isinstance(value, list):
        return [repeat_batch(v, r, b) for v in value]
    if isinstance(value, dict):
        return {k: repeat_batch(v, r, b) for k, v in value.items()}
    return value


def _raster_to_windows(raster: torch.Tensor, merge_size: int) -> torch.Tensor:
    from einops import rearrange

    return rearrange(raster, "(hb mh) (wb mw) d -> (hb wb mh mw) d", mh=merge_size, mw=merge_size)


class ForwardCapture:
    """Context manager installing the hooks of one forward pass (see module docstring).

    ``hidden_blocks``: decoder block index -> the requested hidden-state indices that are its
    input; ``norm_layers``: requested indices naming the final norm's output (-1).
    ``vision_patch_hw``: per image (h_p, w_p) when vision activations are requested.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        hidden_blocks: dict[int, list[int]],
        norm_layers: list[int],
        vision_patch_hw: list[tuple[int, int]] | None,
        merge_size: int,
        on_attention: Callable[[int, torch.Tensor], None] | None,
    ):
        text = model.model.language_model
        self.layers: nn.ModuleList = text.layers
        self.norm: nn.Module = text.norm
        self.vision_last_block: nn.Module = model.model.visual.blocks[-1]
        self.hidden_blocks = hidden_blocks
        self.norm_layers = norm_layers
        self.vision_patch_hw = vision_patch_hw
        self.merge_size = merge_size
        self.on_attention = on_attention

        if vision_patch_hw is not None:
            self.root: tuple[str, int] | None = ("vision", 0)
        elif hidden_blocks:
            self.root = ("block", min(hidden_blocks))
        elif norm_layers:
            self.root = ("norm", 0)
        else:
            self.root = None
        self.first_replay_block = min(hidden_blocks) if hidden_blocks else len(self.layers)

        self.hidden: dict[int, torch.Tensor] = {}
        self.vision_activations: list[torch.Tensor] | None = None
        self.replay = ReplayState()
        self._handles: list[Any] = []

    # -- hooks -----------------------------------------------------------------------------
    def _vision_hook(self, module, args, output):
        torch.set_grad_enabled(True)
        sizes = [h * w for h, w in self.vision_patch_hw]
        rasters = [
            windows_to_raster(chunk, hw, self.merge_size).detach().requires_grad_(True)
            for chunk, hw in zip(output.split(sizes), self.vision_patch_hw)
        ]
        self.vision_activations = rasters
        return torch.cat([_raster_to_windows(r, self.merge_size) for r in rasters])

    def _block_pre_hook(self, index: int):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            if self.root == ("block", index):
                torch.set_grad_enabled(True)
                hidden = hidden.detach().requires_grad_(True)
                if args:
                    args = (hidden, *args[1:])
                else:
                    kwargs = {**kwargs, "hidden_states": hidden}
            for layer in self.hidden_blocks.get(index, ()):
                self.hidden[layer] = hidden
            self.replay.block_kwargs[index] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            return args, kwargs

        return hook

    def _norm_hook(self, module, args, output):
        if self.root == ("norm", 0):
            torch.set_grad_enabled(True)
            output = output.detach().requires_grad_(True)
        for layer in self.norm_layers:
            self.hidden[layer] = output
        return output

    def _attention_hook(self, index: int):
        def hook(module, args, output):
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise RuntimeError(f"decoder layer {index} returned no attention weights (is eager attention on?)")
            self.on_attention(index, weights.detach())

        return hook

    # -- context ---------------------------------------------------------------------------
    def __enter__(self) -> "ForwardCapture":
        if self.vision_patch_hw is not None:
            self._handles.append(self.vision_last_block.register_forward_hook(self._vision_hook))
        for i in range(self.first_replay_block, len(self.layers)):
            self._handles.append(self.layers[i].register_forward_pre_hook(self._block_pre_hook(i), with_kwargs=True))
        if self.norm_layers or self.root == ("norm", 0):
            self._handles.append(self.norm.register_forward_hook(self._norm_hook))
        if self.on_attention is not None:
            for i, layer in enumerate(self.layers):
                self._handles.append(layer.self_attn.register_forward_hook(self._attention_hook(i)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
