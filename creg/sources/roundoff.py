"""How much of a layer's Grad x Act is signal: the cancellation ratio, and the round-off flag.

For one sample and one hidden-state index l, over its vision tokens j (d the hidden width):

    ratio^(l) = sum_j |sum_d g_{j,d} h_{j,d}| / sum_j sum_d |g_{j,d} h_{j,d}|

1 means no cancellation inside the dot products g_j . h_j. At the input of a pre-norm block
(index -2 for the last block) a token reaches the answer only through ``RMSNorm(h_j)``, which
ignores the scale of h_j up to the norm's eps, so g_j . h_j cancels to what is left of eps and of
float round-off (docs/paper-to-code.md, "Layer indices"): a source built on g . h there measures
nothing. Either residual has a size known in advance (:func:`roundoff_threshold`):

* float round-off: :data:`ROUNDOFF_RATIO` (float32 and wider) or :data:`LOW_PRECISION_RATIO`
  (bfloat16, float16), between the largest ratio measured at such a layer and the smallest
  measured at a layer with signal;
* the norm's eps: through a scale-invariant read, g_j . h_j keeps about eps / (var_d h_j + eps) of
  the magnitude of its products (Euler's theorem with the eps term), so the largest such value
  over the vision tokens, with eps the largest of the reading block's norms (:func:`norm_eps`).

A ratio below the larger of the two flags the record ``roundoff_layer_<l>`` (:func:`roundoff_flag`);
a layer with a real but small signal (the input of a block whose own read is scale-invariant
but whose residual is read further up, e.g. -3 on the toy, ratio >= 7e-6) stays unflagged. The
run's warnings name each flagged layer once (:mod:`creg.summary.warnings`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch

from creg.core.roundoff import CANCELLATION_KEY, THRESHOLD_KEY, roundoff_flag
from creg.plugins.adapter import VisionLayout
from creg.plugins.relevance import RelevanceMap
from creg.sources.token_grid import vision_tokens

if TYPE_CHECKING:  # pragma: no cover
    from creg.explain.context import ExplainContext
    from creg.plugins.adapter import VLMAdapter

#: Float32 (and float64) round-off of the ratio. Measured (scripts/roundoff_separation.py): layer -2
#: of the trained toy, where Grad x Act is round-off, at most 4.5e-8; the smallest ratio of a layer
#: with signal, -3 there, 7.3e-6 (200 scenes).
ROUNDOFF_RATIO = 1e-6

#: The same for bfloat16 and float16 hidden states: -2 in bfloat16 measures at most 3.9e-4 on the
#: toy, -4 and -5 there and -3..-5 of a random 28-layer Qwen2-VL at least 3.9e-3 (the toy's -3,
#: 7.3e-6..2.9e-3 in float32, drowns in bfloat16's round-off).
LOW_PRECISION_RATIO = 1e-3



def cancellation_ratio(grad: torch.Tensor, hidden: torch.Tensor, layout: VisionLayout) -> float:
    """``(seq, d), (seq, d)`` one sample's gradient and hidden state -> ratio^(l) over its vision
    tokens (module docstring); 0 when every product is 0."""
    dtype = torch.promote_types(grad.dtype, torch.float32)  # float64 stays float64
    prod = vision_tokens(grad.detach().to(dtype) * hidden.detach().to(dtype), layout)  # n_vis d
    total = float(prod.abs().sum())
    return float(prod.sum(-1).abs().sum()) / total if total > 0 else 0.0


def roundoff_threshold(hidden: torch.Tensor, layout: VisionLayout, eps: float = 0.0) -> float:
    """``(seq, d)`` one sample's hidden state at a layer, and the eps of the norm that reads it ->
    the ratio below which its Grad x Act is round-off or eps (module docstring): the larger of the
    dtype's round-off ratio and ``max_j eps / (var_d h_j + eps)`` over the vision tokens."""
    floor = ROUNDOFF_RATIO if torch.finfo(hidden.dtype).bits >= 32 else LOW_PRECISION_RATIO
    if eps <= 0:
        return floor
    var = vision_tokens(hidden.detach().double(), layout).var(-1, unbiased=False)  # n_vis
    if var.numel() == 0:
        return floor
    return max(floor, float((eps / (var + eps)).max()))


def norm_eps(adapter: "VLMAdapter | None", layer: int) -> float:
    """The largest eps of the normalisations inside the decoder block that reads hidden-state
    index ``layer`` (a module's float ``variance_epsilon``, as transformers' RMSNorms, or ``eps``,
    as torch's LayerNorm and RMSNorm); 0 when the adapter declares no blocks (:meth:`model_parts`)
    or no block reads ``layer`` (-1, after the final norm)."""
    parts = adapter.model_parts() if adapter is not None else None
    if parts is None:
        return 0.0
    block = adapter.layer_to_block(layer)
    if block >= len(parts.blocks) or not isinstance(parts.blocks[block], torch.nn.Module):
        return 0.0
    found = [getattr(m, name, None) for m in parts.blocks[block].modules() for name in ("variance_epsilon", "eps")]
    return max((e for e in found if isinstance(e, float) and e > 0), default=0.0)


def layer_diagnostics(ratios: dict[int, float], thresholds: dict[int, float]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Per-layer ratios and thresholds of one sample -> (``extra`` entries ``{"cancellation": {"-2": r, ...},
    "roundoff_threshold": {"-2": t, ...}}``, flags of the layers whose ratio is below their threshold)."""
    extra = {CANCELLATION_KEY: {str(l): r for l, r in ratios.items()},
             THRESHOLD_KEY: {str(l): thresholds[l] for l in ratios}}
    return extra, [roundoff_flag(l) for l, r in ratios.items() if r < thresholds[l]]


def sample_diagnostics(grads: dict[int, torch.Tensor], hidden: dict[int, torch.Tensor], eps: dict[int, float],
                       i: int, layout: VisionLayout) -> tuple[dict[int, float], dict[int, float]]:
    """Sample ``i``'s (ratio, threshold) at each layer of ``eps`` (layer -> :func:`norm_eps`) from
    ``(b, seq, d)`` gradients and hidden states."""
    ratios = {l: cancellation_ratio(grads[l][i], hidden[l][i], layout) for l in eps}
    return ratios, {l: roundoff_threshold(hidden[l][i], layout, e) for l, e in eps.items()}


def annotate(maps: list[RelevanceMap], ctx: "ExplainContext", grads: dict[int, torch.Tensor],
             layers: Iterable[int]) -> list[RelevanceMap]:
    """``maps`` (one per sample of ``ctx``) with each sample's ratios and thresholds at ``layers`` in
    ``extra`` and the round-off flags in ``flags``; ``grads``: the ``(b, seq, d)`` gradients the source read."""
    eps = {l: norm_eps(ctx.adapter, l) for l in layers}
    for i, m in enumerate(maps):
        extra, flags = layer_diagnostics(*sample_diagnostics(grads, ctx.output.hidden, eps, i, ctx.layout(i)))
        m.extra.update(extra)
        m.flags.extend(f for f in flags if f not in m.flags)
    return maps
