"""The RelevanceSource contract: one per-token relevance signal (CREG or a baseline).

Every source returns, for each sample of a batch, a :class:`RelevanceMap` -- non-negative
relevance on a grid of points of the original image. All sources then go through the same
compass projection (:func:`creg.core.compass.project_to_compass`): as in the paper, "the only
difference is the per-token relevance signal".

Sources never run the model themselves. Each declares in :meth:`RelevanceSource.request` what it
reads -- hidden states, gradients (which target, which layers), vision activations, attention
maps -- as a :class:`SourceRequest`; the per-batch :class:`creg.explain.context.ExplainContext` plans
one forward pass and one backward pass per gradient target from the union of the run's
requests, and a separate no-grad pass for attention maps (so that a source that reads them does
not change the numerics of the gradient pass). Sources then read the shared results.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal, Protocol, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field

from creg.core.sample import Box
from creg.plugins.adapter import ForwardRequest
from creg.plugins.capabilities import Capability
from creg.plugins.options import PluginOptions

#: Gradient targets: a (b,) function of the class logits.
#: ``gt`` = z_gt, ``pred`` = z_pred; ``*_contrastive`` = tau of Eq. 1 (z_tgt - z_neg).
Target = Literal["gt", "pred", "gt_contrastive", "pred_contrastive"]


class RelevanceMap(BaseModel):
    """Relevance for one sample.

    * ``values``: ``(h, w)`` float, finite and >= 0 (the projection flags and repairs anything else).
    * ``cell_xy``: ``(h, w, 2)`` pixel centres (x, y) of the cells in the original image, or None
      for a grid that tiles the whole image uniformly (cell (u, v) centred at
      ((v + 0.5) W / w, (u + 0.5) H / h)).
    * ``ref_box``: project around this box instead of the sample's reference box A
      (the randomised-reference control, ``random_ref``); the true direction A -> B used by the
      metrics is unchanged. None for every ordinary source.
    * ``extra``: source-specific diagnostics, copied into the record's ``extra`` (JSON values),
      e.g. the per-layer cancellation ratios (:mod:`creg.sources.roundoff`) or IG's completeness gap.
    * ``flags``: record flags the source raises (e.g. ``roundoff_layer_-2``), added to the
      projection's own.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    values: torch.Tensor
    cell_xy: torch.Tensor | None = None
    ref_box: Box | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    flags: list[str] = Field(default_factory=list)


class GradientRequest(BaseModel):
    """One gradient a source reads: d target / d hidden[layer] for ``layers``, and d target / d
    vision activations when ``vision``. The context takes all gradients of one target in one
    backward pass."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: Target
    layers: tuple[int, ...] = ()
    vision: bool = False


class SourceRequest(BaseModel):
    """What a source reads from a batch's passes (all fields default to "nothing")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: hidden-state indices (see :mod:`creg.plugins.adapter`) the source reads, with gradients attached
    #: (e.g. for a replay, :meth:`creg.plugins.adapter.VLMAdapter.logits_from_layer`).
    layers: tuple[int, ...] = ()
    #: the gradients the source reads; their layers are kept by the forward pass too.
    gradients: tuple[GradientRequest, ...] = ()
    #: the vision encoder's last-layer activations.
    vision_activations: bool = False
    #: per-layer attention maps, streamed in a separate no-grad pass to the source's
    #: :meth:`RelevanceSource.attention_reader`.
    attentions: bool = False
    #: the source reads gradients of its ``layers`` (or its gradients' layers) at positions before
    #: the first image token (:attr:`creg.plugins.adapter.ForwardRequest.gradients_before_image`). A
    #: source that reads the vision tokens only says False, and the pass may then leave the text
    #: before the image out of the graph.
    gradients_before_image: bool = True

    @classmethod
    def of(cls, request: "SourceRequest | ForwardRequest") -> "SourceRequest":
        """A :class:`SourceRequest` from either kind (a 0.1 source's ``request()`` returns a
        :class:`~creg.plugins.adapter.ForwardRequest`: its layers and vision activations are kept, the
        gradients it will read are not declared and are planned when first asked for)."""
        if isinstance(request, SourceRequest):
            return request
        if isinstance(request, ForwardRequest):
            return cls(layers=tuple(request.layers), vision_activations=request.vision_activations,
                       attentions=request.attentions, gradients_before_image=request.gradients_before_image)
        raise TypeError(f"a source's request() must return a SourceRequest, got {type(request).__name__}")

    @classmethod
    def union(cls, requests: Sequence["SourceRequest | ForwardRequest"]) -> "SourceRequest":
        """The smallest request that serves all of ``requests`` (gradients merged per target)."""
        reqs = [cls.of(r) for r in requests]
        per_target: dict[str, tuple[set[int], bool]] = {}
        for r in reqs:
            for g in r.gradients:
                layers, vision = per_target.get(g.target, (set(), False))
                per_target[g.target] = (layers | set(g.layers), vision or g.vision)
        return cls(
            layers=tuple(sorted({l for r in reqs for l in r.layers})),
            gradients=tuple(GradientRequest(target=t, layers=tuple(sorted(ls)), vision=v)
                            for t, (ls, v) in sorted(per_target.items())),
            vision_activations=any(r.vision_activations for r in reqs),
            attentions=any(r.attentions for r in reqs),
            # only a source that reads hidden states can read their gradients there
            gradients_before_image=any(r.gradients_before_image for r in reqs if r.reads_hidden_states),
        )

    @property
    def reads_hidden_states(self) -> bool:
        """Does the source read hidden states (``layers``, or gradients at layers)?"""
        return bool(self.layers) or any(g.layers for g in self.gradients)

    def forward_request(self) -> ForwardRequest:
        """The gradient pass: every layer read or differentiated, vision activations if any
        source reads them or their gradient. Never attention maps (they have their own pass)."""
        layers = {l for l in self.layers} | {l for g in self.gradients for l in g.layers}
        return ForwardRequest(
            layers=tuple(sorted(layers)),
            vision_activations=self.vision_activations or any(g.vision for g in self.gradients),
            gradients_before_image=self.gradients_before_image and self.reads_hidden_states,
        )


class AttentionReader(Protocol):
    """Receives one batch's attention maps, one decoder layer at a time, in order.

    A reader that reads only the mean over heads may say so with a class attribute
    ``head_mean = True``: when every reader of a pass says it, the adapter may hand them
    ``(b, 1, seq, seq)`` maps holding that mean instead of every head (:data:`HEAD_MEAN`)."""

    def update(self, layer_idx: int, attn: torch.Tensor) -> None:
        """``layer_idx``: 0-based decoder layer; ``attn``: ``(b, heads, seq, seq)``, detached
        (``heads`` may be 1, the mean over heads, for a reader with ``head_mean = True``)."""


#: Attribute of an attention callback (``on_attention``) that is True when its receivers read only
#: the mean over heads: an adapter may then pass ``(b, 1, q, k)`` head means (or every head, as ever).
HEAD_MEAN = "head_mean"


class RelevanceSource(ABC):
    """Base class of relevance sources.

    Options arrive as keyword arguments (``--source-opt name.key=value`` on the command line)
    and are validated by the class's nested ``Options`` model into ``self.options``; a source
    with options overrides ``Options`` (a pydantic model with ``extra="forbid"`` and a
    ``Field(description=...)`` per option).
    """

    #: the name used on the command line.
    name: ClassVar[str] = ""
    #: short description shown by ``creg list``; give it at registration (``register(..., description=...)``),
    #: which sets it here when the class is loaded (a class may instead declare its own).
    description: ClassVar[str] = ""
    #: False for geometry-only sources (oracle, random, target_box) that run without a model.
    needs_model: ClassVar[bool] = True
    #: what the source needs from the adapter beyond what :meth:`request` reads (:mod:`creg.plugins.capabilities`),
    #: e.g. ``{Capability.LAYER_REPLAY}`` for a source that calls ``logits_from_layer``.
    needs: ClassVar[frozenset[Capability]] = frozenset()

    class Options(PluginOptions):
        """No options."""

        model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, **options: Any):
        self.options = self.Options(**options)

    def request(self) -> SourceRequest:
        """What this source reads from the batch's passes (see :class:`SourceRequest`)."""
        return SourceRequest()

    def attention_reader(self) -> AttentionReader:
        """A fresh reader for one batch's attention maps (sources whose request has ``attentions``)."""
        raise NotImplementedError(f"source {self.name!r} requests attentions but defines no attention_reader()")

    @abstractmethod
    def explain(self, ctx) -> list[RelevanceMap]:
        """One :class:`RelevanceMap` per sample of ``ctx.samples``, in order. ``ctx``: the batch's
        :class:`creg.explain.context.ExplainContext` (the framework plans it from the sources' requests)."""

