"""Attention-rollout baseline (Abnar & Zuidema 2020; paper §5.1, Appendix A.3).

All decoder layers, heads averaged, identity residual added and rows re-normalised at every
layer, multiplied cumulatively: R = Â_L ... Â_1. The relevance of vision token j is
R[answer position, j] -- the row of the last token (the one whose next-token logits are the
class logits), restricted to the vision columns. The product is accumulated while the forward
pass streams one layer's attention at a time (:class:`creg.context.AttentionRollout`).
"""

from __future__ import annotations

import torch

from ..adapter import ForwardRequest
from ..context import ExplainContext
from ..relevance import RelevanceMap, RelevanceSource
from .token_grid import token_relevance_maps


class AttentionRolloutSource(RelevanceSource):
    """Attention rollout over all decoder layers, last-token row at the vision tokens. No options."""

    name = "attention_rollout"
    description = "attention rollout over all decoder layers, last-token row (paper §5.1)"

    def request(self) -> ForwardRequest:
        return ForwardRequest(attentions=True)

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        rollout = ctx.attention_rollout  # b q k
        answer = ctx.output.answer_index.to(rollout.device)
        rows = rollout[torch.arange(rollout.shape[0], device=rollout.device), answer]  # b k
        return token_relevance_maps(rows, ctx)
