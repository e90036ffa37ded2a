"""Gradient x activation (Eq. 2) and the single-layer Grad x Act baseline (paper §5.1).

``gradxact``: r_j = |sum_d g_{j,d} h_{j,d}| at hidden-state index -2 only, with the plain
(non-contrastive) target z_gt -- the §5.1 baseline "Grad x Act at layer -2 only (no multi-layer
aggregation, no contrastive target)". Its target is z_gt like every §5.1 baseline whose target
the paper names (GradCAM, IG, gradient norm); ``target=pred`` gives z_pred instead.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import ConfigDict, Field

from creg.explain.context import ExplainContext
from creg.plugins.options import PluginOptions
from creg.plugins.relevance import (
    GradientRequest,
    RelevanceMap,
    RelevanceSource,
    SourceRequest,
)
from creg.sources.option_types import Layer, Lowercase
from creg.sources.roundoff import annotate
from creg.sources.token_grid import token_relevance_maps


def grad_times_act(grad: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Eq. 2 for every position: ``(b, seq, d), (b, seq, d) -> (b, seq)``, |sum_d g * h|."""
    return torch.einsum("bsd,bsd->bs", grad.float(), hidden.detach().float()).abs()


class GradXActSource(RelevanceSource):
    """Single-layer Grad x Act. Options: ``layer`` (default -2), ``target`` (gt | pred, default gt)."""

    name = "gradxact"

    class Options(PluginOptions):
        model_config = ConfigDict(extra="forbid", frozen=True)

        layer: Layer = Field(-2, description="one hidden-state index (multi-layer is the creg source)")
        target: Annotated[Literal["gt", "pred"], Lowercase] = Field(
            "gt", description="the plain logit differentiated: z_gt (the paper's baseline) or z_pred")

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.layer: int = self.options.layer
        self.target: str = self.options.target

    def request(self) -> SourceRequest:
        return SourceRequest(gradients=(GradientRequest(target=self.target, layers=(self.layer,)),),
                             gradients_before_image=False)  # the vision tokens only

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        grad = ctx.gradients(self.target, [self.layer])[self.layer]
        relevance = grad_times_act(grad, ctx.output.hidden[self.layer])  # b seq
        return annotate(token_relevance_maps(relevance, ctx), ctx, {self.layer: grad}, [self.layer])
