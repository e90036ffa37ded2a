"""Ground truth for explanations: the exact causal effect of each vision token, where an adapter
knows it, and how a relevance map is scored against it.

An adapter whose model's evidence is known declares ``provides_causal_effects = True`` and
implements :meth:`creg.plugins.adapter.VLMAdapter.causal_effects`: per sample, a ``(H_g, W_g)`` float
tensor on its vision grid (the layout's cells, raster order) holding

    e_j = gap(x) - gap(x without vision token j),   gap = z_gt - max_{k != gt} z_k

(the true answer's logit over the best other one; removal = the token deleted from the
sequence). The core asks for it only when the adapter declares it; creg's ``planted`` adapter does
(docs/planted.md). Each relevance map is then scored against ``|e|`` (relevance is a magnitude):

* ``causal_mass``: the share of the map's mass on the *causal cells*, the fewest cells (largest
  ``|e|`` first) that hold :data:`CAUSAL_SHARE` of the total ``sum_j |e_j|``;
* ``causal_rank``: Spearman's rank correlation between the map and ``|e|`` over the grid's
  in-image cells (average ranks for ties), effects below :data:`EFFECT_FLOOR` of the largest
  ``|e|`` counted as 0 (tied): otherwise the order of the many near-zero effects off the evidence
  (round-off and tiny side paths) would decide the correlation.

Either is None where it is undefined: no causal effect at all, a map without mass (``causal_mass``),
or a constant map or effect (``causal_rank``).
"""

from __future__ import annotations

import math

import torch

#: the causal cells hold this share of the total absolute effect.
CAUSAL_SHARE = 0.95
#: in ``causal_rank``, effects below this share of the largest ``|e|`` count as 0.
EFFECT_FLOOR = 0.01


def logit_gap(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """``(b, c)`` logits, ``(b,)`` true class -> ``(b,)`` z_label - max of the other logits."""
    z = logits.gather(1, label[:, None])[:, 0]
    others = logits.masked_fill(torch.nn.functional.one_hot(label, logits.shape[1]).bool(), float("-inf"))
    return z - others.max(dim=1).values


def causal_cells(effect: torch.Tensor, share: float = CAUSAL_SHARE) -> torch.Tensor | None:
    """``(h, w)`` effects -> ``(h, w)`` bool: the fewest cells, largest ``|e|`` first, holding ``share``
    of ``sum |e|`` (cells tied with the last one included); None when every effect is 0."""
    a = effect.detach().double().abs().reshape(-1)
    total = float(a.sum())
    if not total > 0:
        return None
    ordered = torch.sort(a, descending=True).values
    k = int(torch.searchsorted(torch.cumsum(ordered, 0), torch.tensor(share * total, dtype=torch.float64)))
    threshold = ordered[min(k, a.numel() - 1)]
    return (a >= threshold).reshape(effect.shape)


def _clean(relevance: torch.Tensor) -> torch.Tensor:
    r = relevance.detach().double()
    return torch.where(torch.isfinite(r), r, torch.zeros_like(r)).clamp_min(0.0)


def causal_mass(relevance: torch.Tensor, effect: torch.Tensor, share: float = CAUSAL_SHARE) -> float | None:
    """Share of the (non-negative) relevance on :func:`causal_cells`; None without mass or effect."""
    cells = causal_cells(effect, share)
    r = _clean(relevance)
    total = float(r.sum())
    if cells is None or not total > 0:
        return None
    return float(r[cells].sum()) / total


def ranks(x: torch.Tensor) -> torch.Tensor:
    """``(n,)`` -> ``(n,)`` float64 ranks 1..n, tied values sharing their average rank."""
    x = x.double()
    order = torch.argsort(x, stable=True)
    sorted_x = x[order]
    ranks_sorted = torch.arange(1, x.numel() + 1, dtype=torch.float64)
    _, inverse, counts = torch.unique_consecutive(sorted_x, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    mean_rank = ends - (counts.double() - 1) / 2  # average of the tied block's ranks
    ranks_sorted = mean_rank[inverse]
    out = torch.empty_like(ranks_sorted)
    out[order] = ranks_sorted
    return out


def spearman(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Spearman's rank correlation of two equal-length vectors; None if either is constant."""
    ra, rb = ranks(a.reshape(-1)), ranks(b.reshape(-1))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    return float((ra * rb).sum()) / den if den > 0 else None


def causal_rank(relevance: torch.Tensor, effect: torch.Tensor, in_image: torch.Tensor | None = None,
                floor: float = EFFECT_FLOOR) -> float | None:
    """Spearman correlation between the relevance and ``|effect|`` over the in-image cells, effects
    below ``floor`` x the largest ``|effect|`` set to 0."""
    keep = torch.ones(effect.shape, dtype=torch.bool) if in_image is None else in_image.bool().cpu()
    a = effect.detach().double().abs().cpu()
    a = torch.where(a >= floor * a.max(), a, torch.zeros_like(a))
    return spearman(_clean(relevance)[keep], a[keep])


def ground_truth_scores(relevance: torch.Tensor, effect: torch.Tensor, in_image: torch.Tensor | None = None
                        ) -> dict[str, float | None] | None:
    """``{"causal_mass", "causal_rank"}`` of a ``(h, w)`` map against the ``(h, w)`` effects; None when
    the map is not on the effects' grid (a source that returns another grid)."""
    if tuple(relevance.shape) != tuple(effect.shape):
        return None
    effect = effect.detach().cpu()
    return {"causal_mass": causal_mass(relevance.cpu(), effect), "causal_rank": causal_rank(relevance.cpu(), effect, in_image)}
