"""The shared state of one explained batch: one forward pass, cached gradients.

The runner builds one :class:`ExplainContext` per batch with the union of the sources'
:class:`~creg.adapter.ForwardRequest`; sources read from it. Gradients of a target are taken
once (``torch.autograd.grad`` with ``retain_graph``) and cached, so ``creg`` and ``gradxact``,
or ``gradnorm`` and ``integrated_gradients`` with the same target, share them.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal, Sequence

import numpy as np
import torch

from .adapter import ForwardOutput, ForwardRequest, VisionLayout, VLMAdapter
from .sample import Sample

#: Gradient targets: a (b,) function of the class logits.
#: ``gt`` = z_gt, ``pred`` = z_pred; ``*_contrastive`` = Eq. 1.
Target = Literal["gt", "pred", "gt_contrastive", "pred_contrastive"]

#: Cell size (px) of the grid used for geometry-only sources when no model runs.
DEFAULT_CELL_PX = 28


def merge_requests(requests: Sequence[ForwardRequest]) -> ForwardRequest:
    """The smallest request that serves all of ``requests``."""
    layers = sorted({l for r in requests for l in r.layers})
    return ForwardRequest(
        layers=tuple(layers),
        vision_activations=any(r.vision_activations for r in requests),
        attentions=any(r.attentions for r in requests),
    )


def contrastive_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """tau = z_tgt - z_neg (Eq. 1) for a batch.

    ``logits``: (b, c); ``target``: (b,) long, the targeted class (gt or prediction).
    z_neg is the prediction when it differs from the target, otherwise the second-highest logit
    -- in both cases the highest logit among the *other* classes.
    """
    z_tgt = logits.gather(1, target[:, None])[:, 0]
    others = logits.masked_fill(torch.nn.functional.one_hot(target, logits.shape[1]).bool(), float("-inf"))
    z_neg = others.max(dim=1).values
    return z_tgt - z_neg


class ExplainContext:
    """One batch of samples, the adapter (or None) and the shared forward pass."""

    def __init__(
        self,
        samples: Sequence[Sample],
        adapter: VLMAdapter | None,
        request: ForwardRequest = ForwardRequest(),
        *,
        seed: int = 0,
        on_attention=None,
    ):
        self.samples = list(samples)
        self.adapter = adapter
        self.request = request
        self.seed = seed
        self._on_attention = on_attention
        self._grads: dict[tuple[str, tuple[int, ...]], dict[int, torch.Tensor]] = {}

    @cached_property
    def output(self) -> ForwardOutput:
        """The one forward pass (run on first use)."""
        if self.adapter is None:
            raise RuntimeError("this source needs a model, but the run has no adapter (--adapter none)")
        return self.adapter.forward(self.samples, self.request, on_attention=self._on_attention)

    @property
    def has_model(self) -> bool:
        return self.adapter is not None

    def layout(self, i: int) -> VisionLayout:
        """Sample ``i``'s vision grid: the model's, or a ``DEFAULT_CELL_PX`` grid without a model."""
        if self.adapter is not None:
            return self.output.vision[i]
        return default_layout(self.samples[i].image_size)

    def target_values(self, target: Target) -> torch.Tensor:
        """(b,) the scalar gradient target per sample, from the class logits."""
        logits = self.output.class_logits
        gt = torch.tensor([s.option for s in self.samples], device=logits.device)
        pred = logits.detach().argmax(dim=1)
        if target == "gt":
            return logits.gather(1, gt[:, None])[:, 0]
        if target == "pred":
            return logits.gather(1, pred[:, None])[:, 0]
        if target == "gt_contrastive":
            return contrastive_target(logits, gt)
        if target == "pred_contrastive":
            return contrastive_target(logits, pred)
        raise ValueError(f"unknown target {target!r}")

    def gradients(self, target: Target, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """d target / d hidden[layer] for each layer, ``(b, seq, d)``; computed once per target.

        Samples are independent in the batch, so the gradient of the sum of per-sample targets
        is each sample's own gradient.
        """
        key = (target, tuple(sorted(self.request.layers)))
        if key not in self._grads:
            out = self.output
            names = list(out.hidden)
            tau = self.target_values(target).sum()
            grads = torch.autograd.grad(tau, [out.hidden[l] for l in names], retain_graph=True, allow_unused=True)
            self._grads[key] = {
                l: (g if g is not None else torch.zeros_like(out.hidden[l])) for l, g in zip(names, grads)
            }
        cached = self._grads[key]
        missing = [l for l in layers if l not in cached]
        if missing:
            raise KeyError(f"layers {missing} were not requested in the forward pass")
        return {l: cached[l] for l in layers}

    def rng(self, i: int, salt: str) -> np.random.Generator:
        """A generator fixed by the run seed, the sample id and ``salt`` (e.g. the source name)."""
        key = f"{self.seed}/{self.samples[i].id}/{salt}".encode()
        return np.random.default_rng(list(key))


def default_layout(image_size: tuple[int, int], cell_px: int = DEFAULT_CELL_PX) -> VisionLayout:
    """A grid of ~``cell_px`` cells tiling the whole image (for runs without a model)."""
    w, h = image_size
    gw, gh = max(1, round(w / cell_px)), max(1, round(h / cell_px))
    return VisionLayout(token_index=torch.empty(0, dtype=torch.long), grid_hw=(gh, gw), cell_xy=grid_cell_xy((gh, gw), image_size))


def grid_cell_xy(grid_hw: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """``(h, w, 2)`` pixel centres of a grid that tiles an image of (width, height) uniformly."""
    gh, gw = grid_hw
    w, h = image_size
    xs = (torch.arange(gw, dtype=torch.float64) + 0.5) * (w / gw)
    ys = (torch.arange(gh, dtype=torch.float64) + 0.5) * (h / gh)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1)
