"""Gradient x activation (Eq. 2) and the single-layer Grad x Act baseline (paper §5.1).

``gradxact``: r_j = |sum_d g_{j,d} h_{j,d}| at hidden-state index -2 only, with the plain
(non-contrastive) target z_gt -- the §5.1 baseline "Grad x Act at layer -2 only (no multi-layer
aggregation, no contrastive target)". Its target is z_gt like every §5.1 baseline whose target
the paper names (GradCAM, IG, gradient norm); ``target=pred`` gives z_pred instead.
"""

from __future__ import annotations

from typing import Any

import torch

from ..adapter import ForwardRequest
from ..context import ExplainContext
from ..relevance import RelevanceMap, RelevanceSource
from ..options import parse_choice, parse_layers
from .token_grid import token_relevance_maps


def grad_times_act(grad: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Eq. 2 for every position: ``(b, seq, d), (b, seq, d) -> (b, seq)``, |sum_d g * h|."""
    return torch.einsum("bsd,bsd->bs", grad.float(), hidden.detach().float()).abs()


class GradXActSource(RelevanceSource):
    """Single-layer Grad x Act. Options: ``layer`` (default -2), ``target`` (gt | pred, default gt)."""

    name = "gradxact"
    description = "Grad x Act at layer -2, target z_gt, no contrastive target (paper §5.1)"

    def __init__(self, *, layer: Any = -2, target: str = "gt", **options: Any):
        super().__init__(**options)
        layers = parse_layers(layer)
        if len(layers) != 1:
            raise ValueError(f"layer: one layer, got {layer!r} (multi-layer is the creg source)")
        self.layer = layers[0]
        self.target = parse_choice(target, "target", ("gt", "pred"))

    def request(self) -> ForwardRequest:
        return ForwardRequest(layers=(self.layer,))

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        grad = ctx.gradients(self.target, [self.layer])[self.layer]
        relevance = grad_times_act(grad, ctx.output.hidden[self.layer])  # b seq
        return token_relevance_maps(relevance, ctx)
