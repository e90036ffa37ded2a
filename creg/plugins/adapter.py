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
``register_adapters`` hook (:mod:`creg.plugins.hookspecs`); :mod:`creg.testing` holds the contract tests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Literal, Sequence

import numpy as np
import torch
from einops import rearrange
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, model_validator

from creg.core.prompts import DEFAULT_PROMPT
from creg.core.sample import Sample
from creg.plugins.capabilities import ALL_CAPABILITIES, Capability
from creg.plugins.options import PluginOptions


class AdapterConfig(BaseModel):
    """How to load a model: what a registry preset resolves to."""

    model: str = Field(description="Hugging Face hub id or local directory")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"  # "auto" -> cuda if available else cpu
    prompt: str = DEFAULT_PROMPT  # template name (A/B/C) or literal template
    #: adapter-specific options: the adapter class's validated ``Options`` instance when it declares one
    #: (``creg.config.resolve.resolve_adapter`` validates them), else the plain dict (0.1 adapters).
    #: Serialised with the instance's own fields (config.json records them; a resume compares them).
    options: SerializeAsAny[PluginOptions] | dict[str, Any] = Field(default_factory=dict)


class ForwardRequest(BaseModel):
    """What a forward pass must keep beyond the class logits."""

    model_config = ConfigDict(frozen=True)

    #: hidden-state indices (see module docstring) to return with gradients attached.
    layers: tuple[int, ...] = ()
    #: keep the vision encoder's last-layer activations, with gradients (GradCAM).
    vision_activations: bool = False
    #: stream each decoder layer's attention map to ``on_attention`` (as the layer runs, not kept).
    attentions: bool = False
    #: somebody reads the gradient of a hidden state (``layers``) at the positions before the first
    #: image token. False: an adapter may compute those positions, which do not depend on the
    #: image, outside the autograd graph (once per run); their gradient is then 0, and hidden
    #: states, logits, attention maps and every gradient from the first image token on stay the same.
    gradients_before_image: bool = True


class VisionGrid(BaseModel):
    """One raster grid of vision tokens: a whole image, a tile, a thumbnail, a base image.

    * ``token_index``: ``(h * w,)`` long, positions of the grid's tokens in the (padded)
      sequence, in raster order (row-major, top row first).
    * ``grid_hw``: ``(h, w)`` after token merging.
    * ``cell_xy``: ``(h, w, 2)`` float, pixel centre (x, y) of each cell in the *original*
      image (every resize, crop, pad and tiling undone). A cell on padding outside the image
      has its centre outside ``[0, W] x [0, H]``.
    * ``cell_in_image``: ``(h, w)`` bool, False for cells on padding (they carry no
      relevance); None = every cell is on the image.
    * ``name``: what the grid is ("image", "tile 0", "thumbnail", "base", ...), for reports.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    token_index: torch.Tensor
    grid_hw: tuple[int, int]
    cell_xy: torch.Tensor
    cell_in_image: torch.Tensor | None = None
    name: str = "image"

    @model_validator(mode="after")
    def _shapes_agree(self) -> "VisionGrid":
        h, w = self.grid_hw
        if tuple(self.token_index.shape) != (h * w,):
            raise ValueError(f"token_index has shape {tuple(self.token_index.shape)}, grid {h}x{w} needs ({h * w},)")
        if tuple(self.cell_xy.shape) != (h, w, 2):
            raise ValueError(f"cell_xy has shape {tuple(self.cell_xy.shape)}, grid {h}x{w} needs ({h}, {w}, 2)")
        if self.cell_in_image is not None and tuple(self.cell_in_image.shape) != (h, w):
            raise ValueError(f"cell_in_image has shape {tuple(self.cell_in_image.shape)}, needs ({h}, {w})")
        return self

    @property
    def in_image(self) -> torch.Tensor:
        """``(h, w)`` bool: the cells that lie on the image (all True unless declared)."""
        if self.cell_in_image is None:
            return torch.ones(self.grid_hw, dtype=torch.bool)
        return self.cell_in_image.bool().cpu()


class VisionLayout(BaseModel):
    """Where one sample's image lives in the sequence and on the image.

    A *single-grid* layout (the 0.1 contract, still valid unchanged) gives the grid directly:

    * ``token_index``: ``(n_vis,)`` long, positions of the vision tokens in the (padded)
      sequence, in raster order of the grid (row-major, top row first), ``n_vis = H_g * W_g``.
    * ``grid_hw``: ``(H_g, W_g)`` after token merging.
    * ``cell_xy``: ``(H_g, W_g, 2)`` float, pixel centre (x, y) of each cell in the original
      image (the processor's resize, crop and pad undone).
    * ``patch_hw``: ``(H_p, W_p)`` grid of the vision encoder's activations before merging.

    A *multi-grid* layout (tiles + thumbnail, any-resolution grid + base image) is built with
    :meth:`from_grids`; :attr:`grids` lists every grid and the flat fields above then describe the
    **union** of all cells as one row: ``grid_hw = (1, n_cells)``, ``token_index`` and
    ``cell_xy`` ``(1, n_cells, 2)`` concatenated grid by grid. Code that maps per-token values
    through the flat fields (every relevance source) therefore covers every cell, and the
    compass projects the union by pixel centres. Per-grid geometry (footprints, raster
    checks) must use ``grids``, which is never empty: a single-grid layout has one.

    Optional, both kinds:

    * ``cell_in_image``: ``(H_g, W_g)`` bool over the flat cells, False on padding.
    * ``non_spatial_index``: ``(n,)`` long, positions of vision tokens that have no pixel
      position (CLS, row-newline, tile-separator tokens); they belong to no grid.
    * ``patch_xy``: ``(H_p, W_p, 2)`` pixel centres of the vision encoder's activation patches
      in the original image (rows of several tiles stacked), matching
      ``ForwardOutput.vision_activations``. None: :meth:`patch_centres` derives them from
      ``cell_xy`` (each cell split evenly into its patches).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    token_index: torch.Tensor
    grid_hw: tuple[int, int]
    cell_xy: torch.Tensor
    patch_hw: tuple[int, int] | None = None
    cell_in_image: torch.Tensor | None = None
    #: the grids of a multi-grid layout (set by :meth:`from_grids`); empty for a single grid.
    multi_grids: tuple[VisionGrid, ...] = ()
    non_spatial_index: torch.Tensor | None = None
    patch_xy: torch.Tensor | None = None

    @model_validator(mode="after")
    def _patch_xy_fits(self) -> "VisionLayout":
        if self.patch_xy is not None and self.patch_hw is not None and tuple(self.patch_xy.shape) != (*self.patch_hw, 2):
            raise ValueError(f"patch_xy has shape {tuple(self.patch_xy.shape)}, patch_hw {self.patch_hw} needs {(*self.patch_hw, 2)}")
        return self

    @classmethod
    def from_grids(
        cls,
        grids: "list[VisionGrid] | tuple[VisionGrid, ...]",
        *,
        non_spatial_index: torch.Tensor | None = None,
        patch_hw: tuple[int, int] | None = None,
        patch_xy: torch.Tensor | None = None,
    ) -> "VisionLayout":
        """A layout of one or more grids; with one grid it is an ordinary single-grid layout."""
        grids = tuple(grids)
        if not grids:
            raise ValueError("a vision layout needs at least one grid")
        extra = dict(non_spatial_index=non_spatial_index, patch_hw=patch_hw, patch_xy=patch_xy)
        if len(grids) == 1:
            g = grids[0]
            return cls(token_index=g.token_index, grid_hw=g.grid_hw, cell_xy=g.cell_xy,
                       cell_in_image=g.cell_in_image, **extra)
        n = sum(g.grid_hw[0] * g.grid_hw[1] for g in grids)
        return cls(
            token_index=torch.cat([g.token_index.long().cpu() for g in grids]),
            grid_hw=(1, n),
            cell_xy=torch.cat([g.cell_xy.double().cpu().reshape(-1, 2) for g in grids])[None],
            cell_in_image=torch.cat([g.in_image.reshape(-1) for g in grids])[None],
            multi_grids=grids,
            **extra,
        )

    @property
    def grids(self) -> tuple[VisionGrid, ...]:
        """Every grid of the sample (one for a single-grid layout, built from the flat fields)."""
        if self.multi_grids:
            return self.multi_grids
        return (VisionGrid(token_index=self.token_index, grid_hw=self.grid_hw, cell_xy=self.cell_xy,
                           cell_in_image=self.cell_in_image),)

    @property
    def is_multi_grid(self) -> bool:
        return len(self.multi_grids) > 1

    @property
    def in_image(self) -> torch.Tensor:
        """``(H_g, W_g)`` bool over the flat cells: False for cells on padding."""
        if self.cell_in_image is None:
            return torch.ones(self.grid_hw, dtype=torch.bool)
        return self.cell_in_image.bool().cpu()

    def patch_centres(self) -> torch.Tensor | None:
        """``(H_p, W_p, 2)`` pixel centres of the vision-encoder activation patches.

        ``patch_xy`` when the adapter gives it; else, for a single grid, the geometry ``cell_xy``
        implies (not the whole image): each cell's footprint (half the spacing to its neighbours
        on each side) split evenly into its patches when the patch grid is a whole multiple of
        the cell grid, otherwise the patches spread evenly over the cells' joint footprint.
        None for a multi-grid layout without ``patch_xy``, or without ``patch_hw``.
        """
        if self.patch_xy is not None:
            return self.patch_xy.double().cpu()
        if self.patch_hw is None or self.is_multi_grid:
            return None
        xy = self.cell_xy.double().cpu()
        split = split_cells(xy, self.patch_hw)
        return split if split is not None else spread_over_cells(xy, self.patch_hw)


def _spacing(cell_xy: torch.Tensor) -> tuple[float, float]:
    """Mean (dx, dy) between neighbouring cell centres (a lone row or column: the other axis's)."""
    h, w = cell_xy.shape[:2]
    xs, ys = cell_xy[0, :, 0], cell_xy[:, 0, 1]
    dx = float((xs[1:] - xs[:-1]).mean()) if w > 1 else None
    dy = float((ys[1:] - ys[:-1]).mean()) if h > 1 else None
    dx = dx if dx is not None else (dy if dy is not None else 0.0)
    return dx, (dy if dy is not None else dx)


def spread_over_cells(cell_xy: torch.Tensor, patch_hw: tuple[int, int]) -> torch.Tensor:
    """``(H_p, W_p, 2)`` centres of a patch grid laid evenly over the cells' joint footprint
    (first cell's centre - half a spacing to last cell's + half a spacing)."""
    dx, dy = _spacing(cell_xy)
    x0, x1 = float(cell_xy[0, 0, 0]) - dx / 2, float(cell_xy[0, -1, 0]) + dx / 2
    y0, y1 = float(cell_xy[0, 0, 1]) - dy / 2, float(cell_xy[-1, 0, 1]) + dy / 2
    hp, wp = patch_hw
    xs = x0 + (torch.arange(wp, dtype=torch.float64) + 0.5) * ((x1 - x0) / wp)
    ys = y0 + (torch.arange(hp, dtype=torch.float64) + 0.5) * ((y1 - y0) / hp)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def split_cells(cell_xy: torch.Tensor, patch_hw: tuple[int, int]) -> torch.Tensor | None:
    """``(h, w, 2)`` cell centres -> ``(H_p, W_p, 2)`` centres of the patches that tile each cell.

    Needs ``H_p = f_y * h`` and ``W_p = f_x * w`` (whole factors); a cell's footprint is its
    centre +- half the spacing to its neighbours (a lone row or column: the spacing of the
    other axis). Returns None when the factors are not whole.
    """
    h, w = cell_xy.shape[:2]
    hp, wp = patch_hw
    if hp % h or wp % w:
        return None
    fy, fx = hp // h, wp // w
    dx, dy = _spacing(cell_xy)
    offs_x = (torch.arange(fx, dtype=torch.float64) + 0.5) / fx * dx - dx / 2  # fx
    offs_y = (torch.arange(fy, dtype=torch.float64) + 0.5) / fy * dy - dy / 2
    px = (cell_xy[..., 0][:, :, None, None] + offs_x[None, None, None, :])  # h w 1 fx
    py = (cell_xy[..., 1][:, :, None, None] + offs_y[None, None, :, None])  # h w fy 1
    px, py = torch.broadcast_tensors(px, py)  # h w fy fx

    return torch.stack([rearrange(px, "h w fy fx -> (h fy) (w fx)"), rearrange(py, "h w fy fx -> (h fy) (w fx)")], -1)


class LayerOutOfRange(ValueError):
    """A requested hidden-state index does not exist in the model (it has too few layers)."""


class ForwardOutput(BaseModel):
    """The result of :meth:`VLMAdapter.forward` for a batch of ``b`` samples.

    * ``class_logits``: ``(b, 4)`` float32, logits of options "1".."4" = left, right, above, below.
      Part of the autograd graph when ``request.layers`` or ``vision_activations`` was set.
    * ``hidden``: layer index -> ``(b, seq, d)`` hidden state; gradients of ``class_logits``
      reach every returned tensor (take them with ``torch.autograd.grad``). With a device map
      each may be on another device (where the model computed it): a source combining layers
      moves what it combines to one device; ``class_logits`` is on the inputs' device.
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


class OccludedImage(BaseModel):
    """An image with some pixels replaced (causal occlusion, :mod:`creg.explain.occlusion`).

    * ``base``: ``(H, W, 3)`` uint8, the sample's own RGB image.
    * ``fill``: ``(H, W, 3)`` uint8, what replaces the occluded pixels (mid-grey, a blur of ``base``).
    * ``mask``: ``(H, W)`` bool, the occluded pixels (all False: the unoccluded image).

    The image is ``where(mask, fill, base)`` (:meth:`render`). The parts are kept apart so that
    an adapter can preprocess ``base`` and ``fill`` once and compose the occluded inputs
    (:meth:`VLMAdapter.occluded_class_logits`).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    base: Any
    fill: Any
    mask: Any

    def array(self):
        """``(H, W, 3)`` uint8 numpy array of the occluded image."""

        out = np.array(self.base, dtype=np.uint8, copy=True)
        out[self.mask] = np.asarray(self.fill)[self.mask]
        return out

    def render(self):
        """The occluded image as an RGB PIL image."""

        return Image.fromarray(self.array(), "RGB")


class ModelParts(BaseModel):
    """The modules of a model that the model analyses change (``creg analyze randomize`` and
    ``creg analyze layers``, :mod:`creg.explain.model_parts`): an adapter declares them with
    :meth:`VLMAdapter.model_parts`.

    * ``blocks``: the decoder blocks in order, block ``i`` (0-based) reading hidden-state index ``i``
      (so ``len(blocks) == num_layers``);
    * ``vision``: the vision tower (encoder and projector into the decoder), or None;
    * ``mask_kwarg``: the keyword under which every block receives its attention mask, a ``(b, 1, q, k)``
      tensor (bool: True = may attend; float: added to the scores) or None (causal); what the text->vision
      knock-out replaces. None: the blocks take no mask keyword and the knock-out is refused.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    blocks: Sequence[Any]
    vision: Any = None
    mask_kwarg: str | None = "attention_mask"


#: Called once per decoder layer (0-based index, attention ``(b, heads, seq, seq)``), in order.
AttentionCallback = Callable[[int, torch.Tensor], None]


class VLMAdapter(ABC):
    """Base class of every model adapter. Subclass it and register it (see module docstring)."""

    #: short description shown by ``creg list``; give it at registration (``register(..., description=...)``),
    #: which sets it here when the class is loaded (a class may instead declare its own).
    description: ClassVar[str] = ""
    #: the adapter's options (registry ``options`` table, ``--adapter-opt KEY=VALUE``); subclasses declare
    #: their own ``class Options(PluginOptions)`` and read the validated values as ``config.options``.
    Options: ClassVar[type[PluginOptions]] = PluginOptions
    #: True if streaming attention maps (``ForwardRequest.attentions``) leaves the pass bit-identical
    #: (same kernels, same graph): the gradient pass then streams them too and no separate
    #: attention pass runs (:class:`creg.explain.context.ExplainContext`). False (the safe default): a
    #: separate no-grad pass serves them, so a source's numbers never depend on the run's other
    #: sources. The adapter contract checks the claim (``torch.equal`` of the class logits).
    attentions_preserve_numerics: ClassVar[bool] = False
    #: what the adapter gives sources (:mod:`creg.plugins.capabilities`), checked against the sources'
    #: needs before a run starts. Default: every capability (adapters that declare nothing run as
    #: before); an adapter that streams no attention maps, say, declares the smaller set.
    provides: ClassVar[frozenset[Capability]] = ALL_CAPABILITIES
    #: True if the adapter knows the exact causal effect of each vision token (:meth:`causal_effects`):
    #: runs then score every relevance map against it (:mod:`creg.core.ground_truth`). False: never asked.
    provides_causal_effects: ClassVar[bool] = False

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
        Raises ``FileNotFoundError`` / :class:`creg.core.sample.ImageUnreadable` for a missing or
        unreadable image.
        """

    def occluded_class_logits(self, samples: Sequence[Sample], images: Sequence[OccludedImage]) -> torch.Tensor:
        """``(n, 4)`` class logits of ``samples[i]`` shown ``images[i]`` (no gradients); rows of one
        sample are consecutive. The default runs :meth:`forward` on the rendered images; an
        adapter that can build the inputs of occluded copies more cheaply overrides it and must
        return the same numbers (``creg.hf.HFAdapter`` composes preprocessed pixels).
        """
        with torch.inference_mode():
            return self.forward(samples, ForwardRequest(), images=[im.render() for im in images]).class_logits

    def causal_effects(self, samples: Sequence[Sample]) -> list[torch.Tensor]:
        """Per sample, ``(H_g, W_g)`` float: the effect of removing each vision token (cells of the
        sample's layout, raster order) on the true answer's logit gap, ``gap(x) - gap(x without j)``
        (:mod:`creg.core.ground_truth`). Only asked of an adapter that sets ``provides_causal_effects``."""
        raise NotImplementedError(f"{type(self).__name__} does not provide causal effects")

    @abstractmethod
    def logits_from_layer(self, output: ForwardOutput, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """Replay the decoder above ``layer`` with ``hidden`` in place of that hidden state.

        ``hidden``: ``(r * b, seq, d)`` -- ``r`` stacked copies of a batch laid out like
        ``output.hidden[layer]`` (row ``i`` belongs to sample ``i % b``). Returns
        ``(r * b, 4)`` class logits on ``hidden``'s device, differentiable w.r.t. ``hidden``. Only the layers above
        ``layer`` run: this is how integrated gradients avoid re-running the whole model.
        """

    def scaled_layer_replay(self, output: ForwardOutput, layer: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The replay above ``layer`` on per-position scalings of its hidden state: a function
        ``t (r * b, seq) -> (r * b, 4)`` class logits with ``t[i, j] * output.hidden[layer][i % b, j]``
        in place of that hidden state, differentiable w.r.t. ``t``. Integrated gradients with a
        zero baseline walks this path (``t`` = alpha everywhere); d logit / d t_j is
        ``h_j . d logit / d h_j`` at the path point, the token's attribution summed over the
        hidden width. The default builds the scaled hidden state and calls
        :meth:`logits_from_layer`; an adapter that can do it more cheaply (``creg.hf.HFAdapter``:
        the last block's keys and values once per batch) overrides it with the same numbers.
        """
        h = output.hidden[layer].detach()

        def replay(t: torch.Tensor) -> torch.Tensor:
            r = t.shape[0] // h.shape[0]
            path = (t[..., None].to(h.device, torch.float32) * h.float().repeat(r, 1, 1)).to(h.dtype)
            return self.logits_from_layer(output, layer, path)

        return replay

    def layer_to_block(self, layer: int) -> int:
        """The 0-based decoder block whose *input* is hidden-state index ``layer``.

        Index ``-1`` (after the final norm) has no block; it returns ``num_layers``.
        """
        n = self.num_layers
        t = layer if layer >= 0 else n + 1 + layer
        if not 0 <= t <= n:
            raise LayerOutOfRange(
                f"layer {layer} is out of range: the model of adapter {type(self).__name__} has {n} decoder layers, "
                f"so hidden-state indices run from {-(n + 1)} to {n}"
            )
        return t

    def model_parts(self) -> ModelParts | None:
        """The decoder blocks and vision tower (:class:`ModelParts`) that ``creg analyze randomize`` and
        ``creg analyze layers`` change; None (the default): not declared, and those analyses refuse the
        adapter in one line. ``creg.hf.HFAdapter`` declares them for every transformers VLM."""
        return None

    def check_layers(self, layers: Sequence[int]) -> None:
        """Raise :class:`LayerOutOfRange` (one clear line) if any of ``layers`` does not exist."""
        for layer in layers:
            self.layer_to_block(layer)
