"""Attention-rollout baseline (Abnar & Zuidema 2020; paper §5.1, Appendix A.3).

All decoder layers, heads averaged, identity residual added and rows re-normalised at every
layer, multiplied cumulatively: R = Â_L ... Â_1. The relevance of vision token j is
R[a, j] -- the row of the answer position a (the last token, whose next-token logits are the
class logits), restricted to the vision columns.

Only that row is computed. The layers stream by in forward order (one attention map alive at a
time; for the transformers adapters computed beside the gradient pass's own SDPA kernel,
:mod:`creg.hf.attention_stream`); :class:`AttentionRollout` keeps each layer's
``(b, seq, seq)`` head-averaged, normalised map and, once all have arrived, propagates the
answer row from the top: ``r = e_a^T Â_L``, then ``r <- r Â_l`` for l = L-1 .. 1 -- one
vector-matrix product per layer (accumulated in float64), O(L seq^2), instead of a running
matrix product, O(L seq^3). Memory: L maps of ``b seq^2`` float32 (the streamed map of one layer
is ``heads`` times that, alive only while its layer runs).
"""

from __future__ import annotations

import torch

from creg.explain.context import ExplainContext
from creg.plugins.relevance import RelevanceMap, RelevanceSource, SourceRequest
from creg.sources.token_grid import token_relevance_maps


def rollout_layer(attn: torch.Tensor) -> torch.Tensor:
    """``(b, heads, q, k) -> (b, q, k)`` float32: Â = (mean_heads A + I) / rowsum.

    Rows of padding queries (all keys masked, possibly NaN) are treated as zero attention, so
    they become identity rows.
    """
    attn = attn.detach().float()
    # b q k, a new tensor (updated in place); one head (the stream's head mean) is its own mean
    a = torch.nan_to_num(attn[:, 0]) if attn.shape[1] == 1 else torch.nan_to_num_(attn.mean(dim=1))
    a.diagonal(dim1=-2, dim2=-1).add_(1.0)
    return a.div_(a.sum(dim=-1, keepdim=True))


class AttentionRollout:
    """An :class:`creg.plugins.relevance.AttentionReader` accumulating one batch's rollout layers (it
    reads the mean over heads only: ``(b, 1, q, k)`` head means are as good as every head)."""

    head_mean = True

    def __init__(self) -> None:
        #: Â_l for the layers seen so far, ``(b, q, k)`` each, in layer order.
        self.layers: list[torch.Tensor] = []

    @property
    def layers_seen(self) -> int:
        return len(self.layers)

    def update(self, layer_idx: int, attn: torch.Tensor) -> None:
        if layer_idx != len(self.layers):
            raise RuntimeError(f"attention of layer {layer_idx} arrived after {len(self.layers)} layers")
        with torch.no_grad():
            self.layers.append(rollout_layer(attn))

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """``(b,)`` query positions -> ``(b, k)`` rows of R = Â_L ... Â_1 (vector-matrix products)."""
        if not self.layers:
            raise RuntimeError("no attention layer has arrived")
        top = self.layers[-1]
        index = index.to(top.device)
        row = top[torch.arange(top.shape[0], device=top.device), index][:, None, :].double()  # b 1 k
        for a in reversed(self.layers[:-1]):  # each layer's map is on its layer's device (a device map)
            row = torch.bmm(row, a.to(row.device, torch.float64))  # float64: a float32 chain loses ~1e-5
        return row[:, 0, :].float()

    def product(self) -> torch.Tensor:
        """``(b, q, k)`` the full product R = Â_L ... Â_1 (O(L seq^3): for checks, not for runs)."""
        result = self.layers[0]
        for a in self.layers[1:]:
            result = torch.bmm(a.to(result.device), result)
        return result


class AttentionRolloutSource(RelevanceSource):
    """Attention rollout over all decoder layers, answer-position row at the vision tokens. No options."""

    name = "attention_rollout"

    def request(self) -> SourceRequest:
        return SourceRequest(attentions=True)

    def attention_reader(self) -> AttentionRollout:
        return AttentionRollout()

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        rollout = ctx.attention_reader(self)
        rows = rollout.rows(ctx.attention_output.answer_index)  # b k
        return token_relevance_maps(rows, ctx)
