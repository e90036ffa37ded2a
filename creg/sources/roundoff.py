"""How much of a layer's Grad x Act is signal: the cancellation ratio, and the round-off flag.

For one sample and one hidden-state index l, over its vision tokens j (d the hidden width):

    ratio^(l) = sum_j |sum_d g_{j,d} h_{j,d}| / sum_j sum_d |g_{j,d} h_{j,d}|

1 means no cancellation inside the dot products g_j . h_j; float32 round-off is ~1e-7. At the
input of a pre-norm block (index -2 for the last block) a token reaches the answer only through
``RMSNorm(h_j)``, which ignores the scale of h_j up to the norm's eps, so g_j . h_j cancels to an
eps-sized residual (docs/paper-to-code.md, "Layer indices"): a source built on g . h there
measures eps and round-off. A ratio below :data:`ROUNDOFF_RATIO` flags the record
``roundoff_layer_<l>`` (:func:`roundoff_flag`); the run's warnings name each flagged layer once
(:mod:`creg.summary.warnings`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch

from creg.core.roundoff import CANCELLATION_KEY, ROUNDOFF_RATIO, roundoff_flag
from creg.plugins.adapter import VisionLayout
from creg.plugins.relevance import RelevanceMap
from creg.sources.token_grid import vision_tokens

if TYPE_CHECKING:  # pragma: no cover
    from creg.explain.context import ExplainContext

def cancellation_ratio(grad: torch.Tensor, hidden: torch.Tensor, layout: VisionLayout) -> float:
    """``(seq, d), (seq, d)`` one sample's gradient and hidden state -> ratio^(l) over its vision
    tokens (module docstring); 0 when every product is 0."""
    prod = vision_tokens(grad.detach().float() * hidden.detach().float(), layout)  # n_vis d
    total = float(prod.abs().sum())
    return float(prod.sum(-1).abs().sum()) / total if total > 0 else 0.0


def layer_diagnostics(ratios: dict[int, float]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Per-layer ratios of one sample -> (``extra`` entry ``{"cancellation": {"-2": r, ...}}``,
    flags of the layers below :data:`ROUNDOFF_RATIO`)."""
    extra = {CANCELLATION_KEY: {str(l): r for l, r in ratios.items()}}
    return extra, [roundoff_flag(l) for l, r in ratios.items() if r < ROUNDOFF_RATIO]


def sample_ratios(grads: dict[int, torch.Tensor], hidden: dict[int, torch.Tensor], layers: Iterable[int],
                  i: int, layout: VisionLayout) -> dict[int, float]:
    """Sample ``i``'s ratio at each of ``layers`` from ``(b, seq, d)`` gradients and hidden states."""
    return {l: cancellation_ratio(grads[l][i], hidden[l][i], layout) for l in layers}


def annotate(maps: list[RelevanceMap], ctx: "ExplainContext", grads: dict[int, torch.Tensor],
             layers: Iterable[int]) -> list[RelevanceMap]:
    """``maps`` (one per sample of ``ctx``) with each sample's ratios at ``layers`` in ``extra`` and
    the round-off flags in ``flags``; ``grads``: the ``(b, seq, d)`` gradients the source read."""
    layers = tuple(layers)
    for i, m in enumerate(maps):
        extra, flags = layer_diagnostics(sample_ratios(grads, ctx.output.hidden, layers, i, ctx.layout(i)))
        m.extra.update(extra)
        m.flags.extend(f for f in flags if f not in m.flags)
    return maps
