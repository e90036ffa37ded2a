"""Attention-rollout baseline (Abnar & Zuidema 2020; paper §5.1, Appendix A.3).

All decoder layers, heads averaged, identity residual added and rows re-normalised at every
layer, multiplied cumulatively: R = Â_L ... Â_1. The relevance of vision token j is
R[answer position, j] -- the row of the last token (the one whose next-token logits are the
class logits), restricted to the vision columns. The product is accumulated while the forward
pass streams one layer's attention at a time (:class:`creg.explain.AttentionRollout`).
"""

from __future__ import annotations

from ..adapter import ForwardRequest
from ..explain import ExplainContext
from ..relevance import RelevanceMap, RelevanceSource
from .token_grid import relevance_map, to_grid, vision_tokens


class AttentionRolloutSource(RelevanceSource):
    """Attention rollout over all decoder layers, last-token row at the vision tokens. No options."""

    name = "attention_rollout"
    description = "attention rollout over all decoder layers, last-token row (paper §5.1)"

    def request(self) -> ForwardRequest:
        return ForwardRequest(attentions=True)

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        rollout = ctx.attention_rollout  # b q k
        answer = ctx.output.answer_index
        maps = []
        for i in range(len(ctx.samples)):
            layout = ctx.layout(i)
            row = rollout[i, int(answer[i])]  # k
            maps.append(relevance_map(to_grid(vision_tokens(row, layout), layout), layout))
        return maps
