"""CREG's relevance (paper §3.2-3.3): contrastive target, multi-layer Grad x Act, softmax weights.

For each sample, with vision tokens j in V and layers l in L (default {-2, -3, -4, -5}):

* target (Eq. 1): tau = z_tgt - z_neg, z_tgt = z_pred (``creg``) or z_gt (``creg_gt``), z_neg the
  highest other logit; ``contrastive=false`` uses tau = z_tgt (Table 5's "no contrastive").
* Eq. 2: raw_j^(l) = |sum_d g_{j,d}^(l) h_{j,d}^(l)|, g^(l) = d tau / d h^(l).
* per-layer normalisation to [0, 1]: r_j^(l) = raw_j^(l) / max_j raw_j^(l) (``normalize=max``,
  default: keeps relevance ratios and zero at zero) or min-max (``normalize=minmax``).
* Eq. 3: w_l = softmax_l(max_j raw_j^(l)) on the *raw* maxima, r_j = sum_l w_l r_j^(l).

Why raw maxima: after normalisation every layer's maximum is exactly 1 (with either
normalisation), so a softmax on normalised maxima would always give uniform weights and Eq. 3
would say nothing; "softmax weights proportional to signal magnitude" only means something for
the maxima before normalisation. A layer whose relevance is all zero gets r^(l) = 0.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import ConfigDict, Field

from ..options import PluginOptions
from ..context import ExplainContext
from ..relevance import GradientRequest, RelevanceMap, RelevanceSource, SourceRequest, Target
from .gradxact import grad_times_act
from .option_types import Layers, Lowercase
from .roundoff import annotate
from .token_grid import relevance_map, to_grid, vision_tokens

#: the paper's default layers (Appendix A.3): the inputs of the last four decoder blocks.
DEFAULT_LAYERS = (-2, -3, -4, -5)


def normalise_per_layer(raw: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """``(l, n) -> (l, n)`` each layer's vector mapped to [0, 1] (all-zero / constant rows -> 0)."""
    top = raw.amax(dim=1, keepdim=True)
    if mode == "max":
        return torch.where(top > 0, raw / top.clamp_min(torch.finfo(raw.dtype).tiny), torch.zeros_like(raw))
    if mode == "minmax":
        low = raw.amin(dim=1, keepdim=True)
        span = top - low
        return torch.where(span > 0, (raw - low) / span.clamp_min(torch.finfo(raw.dtype).tiny), torch.zeros_like(raw))
    raise ValueError(f"normalize: expected max or minmax, got {mode!r}")


def layer_weights(raw: torch.Tensor) -> torch.Tensor:
    """Eq. 3: ``(l, n) -> (l,)``, w_l = softmax over layers of max_j raw_j^(l)."""
    return torch.softmax(raw.amax(dim=1), dim=0)


def aggregate_layers(raw: torch.Tensor, normalize: str = "max") -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3: ``(l, n)`` raw Grad x Act -> (``(n,)`` r_j = sum_l w_l r_j^(l), ``(l,)`` weights w_l)."""
    weights = layer_weights(raw)
    return torch.einsum("l,ln->n", weights, normalise_per_layer(raw, normalize)), weights


class CregOptions(PluginOptions):
    """Options of ``creg``, ``creg_gt`` and ``random_ref``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: Layers = Field(DEFAULT_LAYERS, description="hidden-state indices L of Eq. 2-3, e.g. -2,-3,-4,-5 "
                           "(the inputs of the last four decoder blocks, the paper's default)")
    contrastive: bool = Field(True, description="target tau = z_tgt - z_neg of Eq. 1; false: tau = z_tgt "
                              "(Table 5's 'no contrastive')")
    normalize: Annotated[Literal["max", "minmax"], Lowercase] = Field(
        "max", description="per-layer normalisation to [0, 1]: max (r / max r) or minmax")


class CregSource(RelevanceSource):
    """CREG, prediction-targeted (the paper's recommended default, §6.4).

    Options (:class:`CregOptions`): ``layers`` (default -2,-3,-4,-5), ``contrastive`` (default
    true), ``normalize`` (max | minmax, default max).
    """

    name = "creg"
    description = "CREG: contrastive multi-layer Grad x Act, prediction-targeted (Eq. 1-3)"
    #: whose logit is z_tgt in Eq. 1.
    mode = "pred"

    Options = CregOptions

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.layers: tuple[int, ...] = self.options.layers
        self.contrastive: bool = self.options.contrastive
        self.normalize: str = self.options.normalize

    @property
    def target(self) -> Target:
        return f"{self.mode}_contrastive" if self.contrastive else self.mode  # type: ignore[return-value]

    def request(self) -> SourceRequest:
        return SourceRequest(gradients=(GradientRequest(target=self.target, layers=self.layers),))

    def vision_relevance(self, ctx: ExplainContext) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per sample: (``(n_vis,)`` combined relevance r_j, ``(l,)`` layer weights w_l)."""
        grads = ctx.gradients(self.target, self.layers)
        # each layer's hidden state is on the device of the block that consumes it (a device map may
        # spread them): the per-layer (b, seq) relevances meet on the first one's
        raw = [grad_times_act(grads[l], ctx.output.hidden[l]) for l in self.layers]
        raw_all = torch.stack([r.to(raw[0].device) for r in raw], dim=1)  # b l seq
        results = []
        for i in range(len(ctx.samples)):
            raw = vision_tokens(raw_all[i].T, ctx.layout(i)).T  # l n_vis
            results.append(aggregate_layers(raw, self.normalize))
        return results

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        return self.diagnose(ctx, [
            relevance_map(to_grid(r, ctx.layout(i)), ctx.layout(i))
            for i, (r, _) in enumerate(self.vision_relevance(ctx))
        ])

    def diagnose(self, ctx: ExplainContext, maps: list[RelevanceMap]) -> list[RelevanceMap]:
        """``maps`` with each layer's cancellation ratio and round-off flag (:mod:`creg.sources.roundoff`)."""
        return annotate(maps, ctx, ctx.gradients(self.target, self.layers), self.layers)


class CregGtSource(CregSource):
    """CREG, ground-truth-targeted: z_tgt = z_gt in Eq. 1. Same options as ``creg``."""

    name = "creg_gt"
    description = "CREG: contrastive multi-layer Grad x Act, ground-truth-targeted (Eq. 1-3)"
    mode = "gt"
