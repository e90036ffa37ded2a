"""Integrated-gradients baseline (Sundararajan et al. 2017; paper §5.1, Appendix A.3).

Layer IG at hidden-state index -2 (the input of the last decoder block), zero baseline over the
whole hidden state, target z_gt, 50 steps:

    attr_{j,d} = h_{j,d} * sum_k w_k * d z_gt / d h_{j,d} |_{h = alpha_k h},     r_j = |sum_d attr_{j,d}|

The integration rule is Captum's default, Gauss-Legendre on [0, 1] (alpha_k = (1 + x_k) / 2,
w_k = omega_k / 2 with numpy's ``leggauss(n)`` nodes x_k and weights omega_k); Captum's Riemann
rules (``riemann_left|right|middle|trapezoid``, with Captum's exact alphas and step sizes) are
available through ``method``. Only the blocks above the layer are replayed, for ``chunk`` path
points at a time stacked along the batch axis (:meth:`creg.adapter.VLMAdapter.logits_from_layer`);
the model below the layer never runs again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import ConfigDict, Field

from ..capabilities import Capability
from ..options import PluginOptions
from ..adapter import ForwardOutput, VLMAdapter
from ..context import ExplainContext
from ..relevance import RelevanceMap, RelevanceSource, SourceRequest
from .option_types import Layer, Lowercase
from .token_grid import token_relevance_maps

METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def integration_rule(n_steps: int, method: str = "gausslegendre") -> tuple[torch.Tensor, torch.Tensor]:
    """``(n,)`` path points alpha_k in [0, 1] and ``(n,)`` weights w_k, float64, as Captum builds them."""
    if n_steps < 2:
        raise ValueError(f"steps: need at least 2, got {n_steps}")
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n_steps)
        return torch.from_numpy(0.5 * (1 + x)), torch.from_numpy(0.5 * w)
    n = n_steps
    weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
    if method == "riemann_trapezoid":
        alphas = torch.linspace(0, 1, n, dtype=torch.float64)
        weights[0] /= 2
        weights[-1] /= 2
    elif method == "riemann_left":
        alphas = torch.linspace(0, 1 - 1 / n, n, dtype=torch.float64)
    elif method == "riemann_middle":
        alphas = torch.linspace(1 / (2 * n), 1 - 1 / (2 * n), n, dtype=torch.float64)
    elif method == "riemann_right":
        alphas = torch.linspace(1 / n, 1, n, dtype=torch.float64)
    else:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    return alphas, weights


def layer_integrated_gradients(
    adapter: VLMAdapter,
    output: ForwardOutput,
    layer: int,
    target: torch.Tensor,
    *,
    steps: int = 50,
    method: str = "gausslegendre",
    chunk: int = 25,
) -> torch.Tensor:
    """IG attributions ``(b, seq, d)`` (float32) of the logits ``target`` ``(b,)`` (class indices)
    w.r.t. ``output.hidden[layer]``, zero baseline. ``chunk`` path points are replayed per call."""
    h = output.hidden[layer].detach()
    b = h.shape[0]
    alphas, weights = integration_rule(steps, method)
    avg_grad = torch.zeros(h.shape, dtype=torch.float32, device=h.device)
    target = target.to(h.device)
    for start in range(0, steps, chunk):
        a = alphas[start : start + chunk].to(device=h.device, dtype=torch.float32)
        w = weights[start : start + chunk].to(device=h.device, dtype=torch.float32)
        c = a.shape[0]
        with torch.enable_grad():
            path = (a.view(c, 1, 1, 1) * h.float()[None]).to(h.dtype).reshape(c * b, *h.shape[1:])  # (c b) s d
            path.requires_grad_(True)
            logits = adapter.logits_from_layer(output, layer, path)  # (c b) 4
            z = logits.gather(1, target.repeat(c)[:, None]).sum()
            (grad,) = torch.autograd.grad(z, path)
        avg_grad += torch.einsum("c,cbsd->bsd", w, grad.view(c, b, *h.shape[1:]).float())
    return h.float() * avg_grad


#: the most path points ``steps`` accepts (the paper uses 50; each point is one replay of the upper blocks).
MAX_STEPS = 10_000


class IntegratedGradientsSource(RelevanceSource):
    """Layer IG at -2, zero baseline, target z_gt. Options: ``steps`` (50), ``method``
    (gausslegendre), ``layer`` (-2), ``chunk`` (path points per replay, 25)."""

    name = "integrated_gradients"
    needs = frozenset({Capability.LAYER_REPLAY})  # replays the blocks above its layer
    description = "integrated gradients at layer -2, zero baseline, 50 Gauss-Legendre steps, target z_gt (paper §5.1)"

    class Options(PluginOptions):
        model_config = ConfigDict(extra="forbid", frozen=True)

        steps: int = Field(50, ge=2, le=MAX_STEPS, description="number of path points (integration nodes)")
        method: Annotated[Literal[METHODS], Lowercase] = Field(  # type: ignore[valid-type]
            "gausslegendre", description="integration rule, as Captum names it: " + ", ".join(METHODS))
        layer: Layer = Field(-2, description="one hidden-state index; only the blocks above it are replayed")
        chunk: int = Field(25, ge=1, description="path points replayed per call (memory vs. speed)")

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.steps: int = self.options.steps
        self.method: str = self.options.method
        self.layer: int = self.options.layer
        self.chunk: int = self.options.chunk

    def request(self) -> SourceRequest:
        # the forward keeps the layer (with its graph) for the replays; IG takes its own gradients
        return SourceRequest(layers=(self.layer,))

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        gt = torch.tensor([s.option for s in ctx.samples])
        attr = layer_integrated_gradients(
            ctx.adapter, ctx.output, self.layer, gt, steps=self.steps, method=self.method, chunk=self.chunk
        )
        relevance = attr.sum(dim=-1).abs()  # b seq
        return token_relevance_maps(relevance, ctx)
