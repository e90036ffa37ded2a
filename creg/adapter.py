"""The VLMAdapter contract: everything model-specific lives behind it.

An adapter wraps one family of vision-language models. Given samples (image, reference and
target names and boxes) and a prompt template it runs the model once and hands back, as
tensors with documented shapes (einops axis names):

* the class logits z_1..z_4 -- next-token logits of the option tokens "1".."4" at the answer
  position, after the model's chat template and generation prompt;
* for every sample, where its vision tokens sit in the sequence, the vision grid shape
  (H_g, W_g) after any token merging, and the pixel centre of every grid cell in the *original*
  image;
* hidden states of requested decoder layers, with gradients available;
* optionally per-layer attention maps, streamed to a callback one layer at a time;
* optionally the vision encoder's last-layer activations (for GradCAM);
* a way to replay the decoder from a layer with a substituted hidden state
  (:meth:`VLMAdapter.logits_from_layer`), so integrated gradients need not re-run the model.

Layer indices
-------------
A layer index ``l`` names entry ``l`` of the Hugging Face ``hidden_states`` tuple, which has
``num_layers + 1`` entries: entry 0 is the embedding output, entry ``i`` (1 <= i < N) is the
output of decoder layer ``i`` (1-based) = the input of decoder layer ``i + 1``, and the last
entry (-1) is the output of the last layer *after the final norm*. Negative indices count from
the end, as in the paper: the default CREG layers {-2, -3, -4, -5} are the inputs of the last
four decoder layers. Entry -1 is accepted but its vision positions get no gradient from the
last-position logits (the final norm is per position), so sources should not use it.

Third parties implement this class in their own package and register it with the
``register_adapters`` hook (:mod:`creg.hookspecs`); :mod:`creg.testing` holds the contract tests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Literal, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field

from .options import PluginOptions
from .prompts import DEFAULT_PROMPT
from .sample import Sample


class AdapterConfig(BaseModel):
    """How to load a model: what a registry preset resolves to."""

    model: str = Field(description="Hugging Face hub id or local directory")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"  # "auto" -> cuda if available else cpu
    prompt: str = DEFAULT_PROMPT  # template name (A/B/C) or literal template
    #: adapter-specific options: the adapter class's validated ``Options`` instance when it declares one
    #: (``creg.run_config.resolve_adapter`` validates them), else the plain dict (0.1 adapters).
    options: PluginOptions | dict[str, Any] = Field(default_factory=dict)


class ForwardRequest(BaseModel):
    """What a forward pass must keep beyond the class logits."""

    model_config = ConfigDict(frozen=True)

    #: hidden-state indices (see module docstring) to return with gradients attached.
    layers: tuple[int, ...] = ()
    #: keep the vision encoder's last-layer activations, with gradients (GradCAM).
    vision_activations: bool = False
    #: run with eager attention and stream each layer's attention map to ``on_attention``.
    attentions: bool = False


class VisionLayout(BaseModel):
    """Where one sample's image lives in the sequence and on the image.

    * ``token_index``: ``(n_vis,)`` long, positions of the vision tokens in the (padded)
      sequence, in raster order of the grid (row-major, top row first), ``n_vis = H_g * W_g``.
    * ``grid_hw``: ``(H_g, W_g)`` after token merging.
    * ``cell_xy``: ``(H_g, W_g, 2)`` float, pixel centre (x, y) of each cell in the original
      image (the processor's resize undone).
    * ``patch_hw``: ``(H_p, W_p)`` grid of the vision encoder's activations before merging.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    token_index: torch.Tensor
    grid_hw: tuple[int, int]
    cell_xy: torch.Tensor
    patch_hw: tuple[int, int] | None = None


class ForwardOutput(BaseModel):
    """The result of :meth:`VLMAdapter.forward` for a batch of ``b`` samples.

    * ``class_logits``: ``(b, 4)`` float32, logits of options "1".."4" = left, right, above, below.
      Part of the autograd graph when ``request.layers`` or ``vision_activations`` was set.
    * ``hidden``: layer index -> ``(b, seq, d)`` hidden state; gradients of ``class_logits``
      reach every returned tensor (take them with ``torch.autograd.grad``).
    * ``vision``: one :class:`VisionLayout` per sample.
    * ``vision_activations``: one ``(H_p, W_p, d_v)`` tensor per sample (raster order), or None.
    * ``answer_index``: ``(b,)`` position whose next-token logits are the class logits.
    * ``state``: adapter-private data for :meth:`VLMAdapter.logits_from_layer` (do not touch).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    class_logits: torch.Tensor
    hidden: dict[int, torch.Tensor] = Field(default_factory=dict)
    vision: list[VisionLayout]
    vision_activations: list[torch.Tensor] | None = None
    answer_index: torch.Tensor
    state: Any = None

    @property
    def predictions(self) -> torch.Tensor:
        """``(b,)`` argmax option index (0..3)."""
        return self.class_logits.detach().argmax(dim=-1)


#: Called once per decoder layer (0-based index, attention ``(b, heads, seq, seq)``), in order.
AttentionCallback = Callable[[int, torch.Tensor], None]


class VLMAdapter(ABC):
    """Base class of every model adapter. Subclass it and register it (see module docstring)."""

    #: short description shown by ``creg list``.
    description: ClassVar[str] = ""
    #: the adapter's options (registry ``options`` table, ``--adapter-opt KEY=VALUE``); subclasses declare
    #: their own ``class Options(PluginOptions)`` and read the validated values as ``config.options``.
    Options: ClassVar[type[PluginOptions]] = PluginOptions

    def __init__(self, config: AdapterConfig):
        self.config = config

    @classmethod
    def load(cls, config: AdapterConfig) -> "VLMAdapter":
        """Load the model named by ``config.model`` (hub id or local dir). Fails clearly if an
        option token is not a single token of the tokenizer."""
        return cls(config)

    @property
    @abstractmethod
    def num_layers(self) -> int:
        """Number of decoder layers N (``hidden_states`` has N + 1 entries)."""

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where the model runs."""

    @abstractmethod
    def forward(
        self,
        samples: Sequence[Sample],
        request: ForwardRequest = ForwardRequest(),
        *,
        on_attention: AttentionCallback | None = None,
        images: Sequence[Any] | None = None,
    ) -> ForwardOutput:
        """Run the model on a batch of samples.

        ``images`` optionally replaces the samples' own images (same order, PIL images of the
        same size), e.g. occluded copies for COS; boxes and names still come from ``samples``.
        Parameters never require grad. Gradients flow only from the earliest requested layer
        upward (or from the vision encoder when ``request.vision_activations``).
        Raises ``FileNotFoundError`` / :class:`creg.sample.ImageUnreadable` for a missing or
        unreadable image.
        """

    @abstractmethod
    def logits_from_layer(self, output: ForwardOutput, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """Replay the decoder above ``layer`` with ``hidden`` in place of that hidden state.

        ``hidden``: ``(r * b, seq, d)`` -- ``r`` stacked copies of a batch laid out like
        ``output.hidden[layer]`` (row ``i`` belongs to sample ``i % b``). Returns
        ``(r * b, 4)`` class logits, differentiable w.r.t. ``hidden``. Only the layers above
        ``layer`` run: this is how integrated gradients avoid re-running the whole model.
        """

    def layer_to_block(self, layer: int) -> int:
        """The 0-based decoder block whose *input* is hidden-state index ``layer``.

        Index ``-1`` (after the final norm) has no block; it returns ``num_layers``.
        """
        n = self.num_layers
        t = layer if layer >= 0 else n + 1 + layer
        if not 0 <= t <= n:
            raise ValueError(f"layer {layer} out of range for a model with {n} decoder layers")
        return t
