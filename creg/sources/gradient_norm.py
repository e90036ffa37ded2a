"""Gradient-norm baseline (paper §5.1, Appendix A.3): r_j = || d z_gt / d h_j^(-2) ||_2."""

from __future__ import annotations

from typing import Any

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
from creg.sources.option_types import Layer
from creg.sources.token_grid import token_relevance_maps


def gradient_norm(grad: torch.Tensor) -> torch.Tensor:
    """``(b, seq, d) -> (b, seq)`` l2 norm over the hidden width."""
    return torch.linalg.vector_norm(grad.float(), dim=-1)


class GradientNormSource(RelevanceSource):
    """l2 norm of the gradient of z_gt at hidden-state index -2. Option: ``layer`` (default -2)."""

    name = "gradnorm"

    class Options(PluginOptions):
        model_config = ConfigDict(extra="forbid", frozen=True)

        layer: Layer = Field(-2, description="one hidden-state index")

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.layer: int = self.options.layer

    def request(self) -> SourceRequest:
        return SourceRequest(gradients=(GradientRequest(target="gt", layers=(self.layer,)),),
                             gradients_before_image=False)  # the vision tokens only

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        norms = gradient_norm(ctx.gradients("gt", [self.layer])[self.layer])  # b seq
        return token_relevance_maps(norms, ctx)
