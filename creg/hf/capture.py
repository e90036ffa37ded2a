"""Hooks that cut the autograd graph at the earliest requested layer and capture what CREG needs.

A forward pass runs under ``torch.no_grad()``. The hook at the *gradient root* -- the vision
module's output when vision activations are requested, else the input of the decoder block
whose input is the earliest requested hidden-state index, else the final norm's output (index
-1 alone) -- switches gradients on and hands the rest of the model a detached leaf that
requires grad. Nothing below the root keeps activations for backward; everything above it is in
the graph. Requested layers are captured as they flow past (the very tensors the next block
consumes, so ``torch.autograd.grad(logits, hidden[l])`` works). Each block's call arguments
(attention mask, rotary cos/sin, ...) from the root upward are kept for replaying the decoder
(:mod:`creg.hf.replay`). Attention maps go to a callback as each layer computes them and are
not kept: under the model's own kernel (sdpa, flash) they are computed beside it from the same
query and key by :class:`creg.hf.attention_stream.AttentionStream`, which leaves the pass
bit-identical; under eager attention the layer returns them itself.

Hook order (transformers 5): the block-input leaf is a forward *pre*-hook on the block, which
replaces the input before the block runs. A hook that replaces a module's *output* must be
registered with ``register_forward_hook(..., prepend=True)``: transformers' own output capture
(``output_hidden_states``) hooks the same modules the first time it is used, and a hook added
after that swaps the tensor too late -- the recorded hidden state is then not the one the rest
of the model uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from einops import rearrange
from torch import nn

from creg.hf.attention_stream import AttentionStream, attention_probabilities
from creg.hf.decoder import DecoderParts
from creg.hf.last_position import (
    apply_rotary,
    last_position_block,
    supports_last_position,
)
from creg.hf.text_prefix import PrefixKeep, TextPrefix, prefix_applies
from creg.plugins.relevance import HEAD_MEAN


@dataclass
class VisionHook:
    """Where the vision-encoder activations for GradCAM come from, and their layout.

    ``module``: the vision module whose *output* holds the activations of every image of the
    batch; ``split(output) -> [(H_p, W_p, d_v), ...]`` one raster per sample (tiles stacked
    along H_p); ``join(rasters) -> output``: the inverse, fed on to the rest of the model.
    """

    module: nn.Module
    split: Callable[[Any], list[torch.Tensor]]
    join: Callable[[list[torch.Tensor]], Any]

    @classmethod
    def cls_then_square_crops(cls, module: nn.Module, crops: list[int], side: int) -> "VisionHook":
        """A ViT layer whose output is ``(n_crops, 1 + side*side, d)``, a CLS row then each crop's
        patches in raster order, crops of the batch's samples one after another (``crops[i]`` of
        sample ``i``): each sample's raster is ``(crops[i]*side, side, d)``, crops stacked along H_p."""

        cls_rows: list[torch.Tensor] = []

        def split(output: torch.Tensor) -> list[torch.Tensor]:
            cls_rows[:] = [output[:, :1]]
            return [rearrange(c[:, 1:], "n (h w) d -> (n h) w d", h=side) for c in output.split(crops)]

        def join(rasters: list[torch.Tensor]) -> torch.Tensor:
            patches = torch.cat([rearrange(r, "(n h) w d -> n (h w) d", h=side) for r in rasters])
            return torch.cat([cls_rows[0], patches], dim=1)

        return cls(module=module, split=split, join=join)

    @classmethod
    def square_crops(cls, module: nn.Module, crops: list[int], side: int) -> "VisionHook":
        """A ViT layer whose output is ``(n_crops, side*side, d)``, each crop's patches in raster
        order and no CLS row (SigLIP: Idefics3, Gemma 3), crops of the batch's samples one after
        another (``crops[i]`` of sample ``i``): each sample's raster is ``(crops[i]*side, side, d)``."""

        def split(output: torch.Tensor) -> list[torch.Tensor]:
            return [rearrange(c, "n (h w) d -> (n h) w d", h=side) for c in output.split(crops)]

        def join(rasters: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat([rearrange(r, "(n h) w d -> n (h w) d", h=side) for r in rasters])

        return cls(module=module, split=split, join=join)

    @classmethod
    def stacked_square_crops(cls, module: nn.Module, layouts) -> "VisionHook":
        """:meth:`square_crops` for layouts whose ``patch_hw`` = (n * side, side) stacks each
        sample's n square crops along the height (:meth:`creg.hf.TiledImage.layout`)."""
        side = layouts[0].patch_hw[1]
        return cls.square_crops(module, [lay.patch_hw[0] // side for lay in layouts], side)

    @classmethod
    def packed_sequence(cls, module: nn.Module, patch_hws: list[tuple[int, int]]) -> "VisionHook":
        """A ViT layer that runs every image of the batch as one packed sequence (Pixtral):
        output ``(1, sum h*w, d)`` (or ``(sum h*w, d)``), image ``i``'s ``patch_hws[i]`` = (h, w)
        patches in raster order, images one after another."""
        sizes = [h * w for h, w in patch_hws]
        shape: list[torch.Size] = []

        def split(output: torch.Tensor) -> list[torch.Tensor]:
            shape[:] = [output.shape]
            flat = output.reshape(-1, output.shape[-1])
            if flat.shape[0] != sum(sizes):
                raise RuntimeError(f"the packed sequence has {flat.shape[0]} patches, the layouts {sum(sizes)}")
            return [c.reshape(h, w, -1) for c, (h, w) in zip(flat.split(sizes), patch_hws)]

        def join(rasters: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat([r.reshape(-1, r.shape[-1]) for r in rasters]).reshape(shape[0])

        return cls(module=module, split=split, join=join)


@dataclass
class ReplayState:
    """What :func:`creg.hf.replay.replay_decoder` needs to rerun the top of the decoder."""

    #: decoder block index -> keyword arguments it was called with (tensors batch-first, ``b``).
    block_kwargs: dict[int, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 0


class ForwardCapture:
    """Context manager installing the hooks of one forward pass (see module docstring).

    ``hidden_blocks``: decoder block index -> the requested hidden-state indices that are its
    input; ``norm_layers``: requested indices naming the final norm's output (-1);
    ``vision``: where to take vision activations (None: not requested);
    ``on_attention(layer, (b, heads, q, k))``: called per decoder layer, in order, with its
    attention probabilities (float32 from the stream, the layer's own weights under eager); the
    stream passes their mean over heads, ``(b, 1, q, k)``, to a callback with ``head_mean = True``.
    """

    def __init__(
        self,
        parts: DecoderParts,
        *,
        hidden_blocks: dict[int, list[int]],
        norm_layers: list[int],
        vision: VisionHook | None = None,
        on_attention: Callable[[int, torch.Tensor], None] | None = None,
        answer_only: bool = False,
        text_prefix: tuple[int, PrefixKeep] | None = None,
    ):
        self.parts = parts
        #: run the last block for the answer (last) position only when nothing reads its other
        #: rows (no final-norm layer): :func:`creg.hf.last_position.last_position_block`. Its attention
        #: map, if streamed, is computed from its input for every row (:meth:`_last_layer_map`),
        #: so the pass is the same with and without attention maps.
        self.answer_only = answer_only and not norm_layers
        #: ``(P, keep)``: the blocks take the first ``P`` positions (the text before the image) from
        #: ``keep`` and compute the rest (:mod:`creg.hf.text_prefix`), where the blocks allow it.
        self.text_prefix = text_prefix
        self._prefix: TextPrefix | None = None
        self._prefix_used = False
        self.hidden_blocks = hidden_blocks
        self.norm_layers = norm_layers
        self.vision = vision
        self.on_attention = on_attention
        if vision is not None:
            self.root: tuple[str, int] | None = ("vision", 0)
        elif hidden_blocks:
            self.root = ("block", min(hidden_blocks))
        elif norm_layers:
            self.root = ("norm", 0)
        else:
            self.root = None
        self.first_replay_block = min(hidden_blocks) if hidden_blocks else len(parts.layers)
        self.hidden: dict[int, torch.Tensor] = {}
        self.vision_activations: list[torch.Tensor] | None = None
        self.replay = ReplayState()
        self._handles: list[Any] = []
        self._stream: AttentionStream | None = None
        self._patched: nn.Module | None = None

    # -- hooks -----------------------------------------------------------------------------
    def _vision_hook(self, module, args, output):
        torch.set_grad_enabled(True)
        rasters = [r.detach().requires_grad_(True) for r in self.vision.split(output)]
        self.vision_activations = rasters
        return self.vision.join(rasters)

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
                raise RuntimeError(f"decoder layer {index} returned no attention weights under eager attention")
            self.on_attention(index, weights.detach())

        return hook

    def _last_layer_map(self, block: nn.Module, hidden: torch.Tensor, kwargs: dict[str, Any]) -> None:
        """Stream the last layer's ``(b, heads, s, s)`` attention probabilities (every query row)
        from its input, as :class:`AttentionStream` computes them from the layer's own query and key."""

        attn = block.self_attn
        with torch.no_grad():
            x = block.input_layernorm(hidden)
            b, s, _ = x.shape
            q = attn.q_proj(x).view(b, s, -1, attn.head_dim)
            k = attn.k_proj(x).view(b, s, -1, attn.head_dim)
            if hasattr(attn, "q_norm"):
                q, k = attn.q_norm(q), attn.k_norm(k)
            cos, sin = kwargs["position_embeddings"]
            q, k = apply_rotary(attn, q.transpose(1, 2), k.transpose(1, 2), cos, sin)
            probs = attention_probabilities(q, k, kwargs.get("attention_mask"), scaling=attn.scaling,
                                            is_causal=getattr(attn, "is_causal", True),
                                            sliding_window=getattr(attn, "sliding_window", None),
                                            head_mean=getattr(self.on_attention, HEAD_MEAN, False))
        self.on_attention(len(self.parts.layers) - 1, probs)

    def _answer_only_forward(self, block: nn.Module, original: Callable[..., Any]) -> Callable[..., Any]:

        def forward(hidden_states, *args, **kwargs):
            if args or "position_embeddings" not in kwargs:
                raise RuntimeError(f"{type(block).__name__} was called without keyword position_embeddings: "
                                   "load the adapter with answer_only_forward=false")
            if self.on_attention is not None:
                self._last_layer_map(block, hidden_states, kwargs)
            return last_position_block(block, hidden_states, kwargs)  # b 1 d: the final norm and head read only it

        return forward

    def _answer_only_applies(self) -> bool:
        """The last block can run for the answer row alone: a Llama/Qwen-style pre-norm block whose
        ``forward`` is its class's (a block wrapped by accelerate's device-map hooks, which replace
        the instance's ``forward``, keeps the full block)."""

        last = self.parts.layers[-1]
        return self.answer_only and supports_last_position(last) and "forward" not in vars(last)

    # -- context ---------------------------------------------------------------------------
    def __enter__(self) -> "ForwardCapture":
        layers = self.parts.layers
        if self._answer_only_applies():
            last = layers[-1]
            last.forward = self._answer_only_forward(last, last.forward)  # the instance's own, removed on exit
            self._patched = last
        if self.text_prefix is not None:
            blocks = list(layers[:-1] if self._patched is not None else layers)
            if prefix_applies(blocks):
                self._prefix = TextPrefix(blocks, *self.text_prefix).__enter__()
        if self.vision is not None:
            self._handles.append(self.vision.module.register_forward_hook(self._vision_hook, prepend=True))
        for i in range(self.first_replay_block, len(layers)):
            self._handles.append(layers[i].register_forward_pre_hook(self._block_pre_hook(i), with_kwargs=True, prepend=True))
        if self.norm_layers or self.root == ("norm", 0):
            self._handles.append(self.parts.norm.register_forward_hook(self._norm_hook, prepend=True))
        if self.on_attention is not None:
            streamed = {}
            for i, layer in enumerate(layers):
                if self._patched is not None and i == len(layers) - 1:
                    continue  # streamed by _last_layer_map
                if AttentionStream.implementation(layer.self_attn) == "eager":
                    self._handles.append(layer.self_attn.register_forward_hook(self._attention_hook(i)))
                else:
                    streamed[layer.self_attn] = i
            if streamed:
                try:
                    self._stream = AttentionStream(streamed, self.on_attention).__enter__()
                except BaseException:
                    self.__exit__(None, None, None)
                    raise
        return self

    @property
    def prefix_used(self) -> bool:
        """Did the pass take the text before the image from its keep (:mod:`creg.hf.text_prefix`)?"""
        return self._prefix_used or bool(self._prefix is not None and self._prefix.used)

    def __exit__(self, *exc) -> None:
        if self._prefix is not None:
            self._prefix_used = bool(self._prefix.used)
            self._prefix.__exit__(*exc)
            self._prefix = None
        if self._stream is not None:
            self._stream.__exit__(*exc)
            self._stream = None
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._patched is not None:
            del self._patched.forward
            self._patched = None
