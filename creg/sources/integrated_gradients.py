"""Integrated-gradients baseline (Sundararajan et al. 2017; paper §5.1, Appendix A.3).

Layer IG at hidden-state index -2 (the input of the last decoder block), zero baseline over the
whole hidden state, target z_gt:

    attr_{j,d} = h_{j,d} * sum_k w_k * d z_gt / d h_{j,d} |_{h = alpha_k h},     r_j = |sum_d attr_{j,d}|

The source computes sum_d attr_{j,d} directly, as sum_k w_k d z_gt / d t_j on the path
t_j * h_j (:meth:`creg.plugins.adapter.VLMAdapter.scaled_layer_replay`; chain rule, the same number):
the transformers adapters replay the last block with its keys and values computed once per
batch and one attention row per path point (:mod:`creg.hf.scaled_replay`).

**Convergence.** Completeness says sum_j attr_j = z(x) - z(0); every record carries the gap
|sum_j attr_j - (z(x) - z(0))| / |z(x) - z(0)| (``extra.completeness_gap``), the steps used
(``extra.ig_steps``) and, with ``steps=auto``, the tolerance it aimed at (``extra.ig_tolerance``;
the run's summary counts the gaps above it). At the input of a pre-norm block the path's change sits near alpha = 0:
RMSNorm(alpha h_j) reaches its full value once alpha^2 mean(h_j^2) >> eps, so z moves over
alpha ~ 1e-8..1e-2 and is flat after. Gauss-Legendre on [0, 1] (Captum's default) puts almost
no nodes there and converges only after thousands of steps; the default rule,
``gausslegendre_log``, is Gauss-Legendre in log10(alpha) on [-10, 0] plus one midpoint node on
[0, 1e-10], and ``steps=auto`` (the default) starts at 50 and doubles until every sample of the
batch has a gap of at most ``tolerance`` (5%) or ``max_steps`` is reached
(``scripts/ig_convergence.py``; docs/sources.md has the measurements). Captum's rules --
``gausslegendre`` (alpha_k = (1 + x_k) / 2, w_k = omega_k / 2 with numpy's ``leggauss(n)``) and
``riemann_left|right|middle|trapezoid`` (Captum's exact alphas and step sizes) -- are available
through ``method``; ``steps=50 method=gausslegendre`` is the paper's set-up. Only the blocks
above the layer are replayed, for ``chunk`` path points at a time stacked along the batch axis;
the model below the layer never runs again.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Any, Callable, Literal

import numpy as np
import torch
from pydantic import ConfigDict, Field

from creg.explain.context import ExplainContext
from creg.plugins.adapter import ForwardOutput, VLMAdapter
from creg.plugins.capabilities import Capability
from creg.plugins.options import PluginOptions
from creg.plugins.relevance import (
    GradientRequest,
    RelevanceMap,
    RelevanceSource,
    SourceRequest,
)
from creg.sources.option_types import Layer, Lowercase
from creg.sources.roundoff import annotate
from creg.sources.token_grid import token_relevance_maps

METHODS = ("gausslegendre_log", "gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
           "riemann_trapezoid")

#: ``gausslegendre_log`` integrates over log10(alpha) from this exponent to 0 (and [0, 10^this]
#: with one midpoint node).
LOG_FLOOR = -10


@functools.lru_cache(maxsize=32)
def _leggauss(n: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy's Gauss-Legendre nodes and weights on [-1, 1] (an eigenproblem: kept per ``n``, read-only)."""
    x, w = np.polynomial.legendre.leggauss(n)
    x.flags.writeable = w.flags.writeable = False
    return x, w


def integration_rule(n_steps: int, method: str = "gausslegendre") -> tuple[torch.Tensor, torch.Tensor]:
    """``(n,)`` path points alpha_k in [0, 1] and ``(n,)`` weights w_k, float64, as Captum builds them."""
    if n_steps < 2:
        raise ValueError(f"steps: need at least 2, got {n_steps}")
    if method == "gausslegendre":
        x, w = _leggauss(n_steps)
        return torch.from_numpy(0.5 * (1 + x)), torch.from_numpy(0.5 * w)
    if method == "gausslegendre_log":
        # alpha = 10^u, u Gauss-Legendre on [LOG_FLOOR, 0]: d alpha = alpha ln(10) du
        x, w = _leggauss(n_steps - 1)
        half = -LOG_FLOOR / 2
        alpha = 10.0 ** (LOG_FLOOR + half * (1 + x))
        floor = 10.0**LOG_FLOOR
        return (torch.from_numpy(np.concatenate([[floor / 2], alpha])),
                torch.from_numpy(np.concatenate([[floor], half * w * alpha * np.log(10)])))
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


def token_integrated_gradients(
    replay: Callable[[torch.Tensor], torch.Tensor],
    shape: tuple[int, int],
    target: torch.Tensor,
    *,
    steps: int = 50,
    method: str = "gausslegendre",
    chunk: int = 25,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """IG attributions summed over the hidden width, ``(b, seq)`` float32: sum_d attr_{j,d} =
    sum_k w_k d z_gt / d t_j at t = alpha_k, with ``replay`` the scaled-layer replay
    (:meth:`creg.plugins.adapter.VLMAdapter.scaled_layer_replay`, ``t (r*b, seq) -> (r*b, 4)``) and
    ``shape`` = (b, seq). Equals ``layer_integrated_gradients(...).sum(-1)`` (chain rule:
    d z / d t_j = h_j . d z / d h_j)."""
    b, seq = shape
    alphas, weights = integration_rule(steps, method)
    total = torch.zeros(b, seq, dtype=torch.float32, device=device)
    for start in range(0, steps, chunk):
        a = alphas[start : start + chunk].to(device=device, dtype=torch.float32)
        w = weights[start : start + chunk].to(device=device, dtype=torch.float32)
        c = a.shape[0]
        with torch.enable_grad():
            t = a.view(c, 1, 1).expand(c, b, seq).reshape(c * b, seq).clone().requires_grad_(True)
            logits = replay(t)  # (c b) 4
            z = logits.gather(1, target.to(logits.device).repeat(c)[:, None]).sum()
            (grad,) = torch.autograd.grad(z, t)
        total += torch.einsum("c,cbs->bs", w, grad.view(c, b, seq).float().to(total.device))
    return total


def path_endpoints(replay: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, int], target: torch.Tensor,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """``(b,)`` z(x) - z(baseline): the target logit on the whole layer minus on the zero baseline."""
    b, seq = shape
    with torch.no_grad():
        t = torch.cat([torch.ones(b, seq, device=device), torch.zeros(b, seq, device=device)])
        z = replay(t).gather(1, target.to(device).repeat(2)[:, None])[:, 0].float()
    return (z[:b] - z[b:]).cpu()


def completeness_gap(attributions: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``(b, seq), (b,) -> (b,)`` |sum_j attr_j - (z(x) - z(baseline))| / |z(x) - z(baseline)|
    (completeness, Sundararajan et al. 2017: the attributions of a converged integral sum to the
    difference). A zero difference gives 0 when the attributions also sum to 0, else inf."""
    diff = (attributions.sum(-1).double().cpu() - delta.double()).abs()
    scale = delta.double().abs()
    return torch.where(scale > 0, diff / scale.clamp_min(1e-300), torch.where(diff > 0, math.inf, 0.0))


def converged_integrated_gradients(
    replay: Callable[[torch.Tensor], torch.Tensor],
    shape: tuple[int, int],
    target: torch.Tensor,
    *,
    steps: int | None = 50,
    start: int = 50,
    max_steps: int = 800,
    tolerance: float = 0.05,
    method: str = "gausslegendre_log",
    chunk: int = 50,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(``(b, seq)`` token attributions, ``(b,)`` completeness gaps, steps used). ``steps=None``
    (``steps=auto``): ``start`` steps, doubled until every sample's gap is at most ``tolerance``
    or the next doubling would pass ``max_steps``."""
    delta = path_endpoints(replay, shape, target, device)
    n = steps if steps is not None else start
    while True:
        attr = token_integrated_gradients(replay, shape, target, steps=n, method=method, chunk=chunk, device=device)
        gap = completeness_gap(attr, delta)
        if steps is not None or bool((gap <= tolerance).all()) or 2 * n > max_steps:
            return attr, gap, n
        n *= 2


class IntegratedGradientsSource(RelevanceSource):
    """Layer IG at -2, zero baseline, target z_gt. Options: ``steps`` (an integer or ``auto``,
    default auto), ``tolerance`` (0.05), ``max_steps`` (800), ``method`` (gausslegendre_log),
    ``layer`` (-2), ``chunk`` (path points per replay, 50).

    Every record carries the completeness gap (``extra.completeness_gap``,
    :func:`completeness_gap`), the steps used (``extra.ig_steps``), with ``steps=auto`` the
    tolerance (``extra.ig_tolerance``), and the cancellation ratio
    of Grad x Act at its layer with the round-off flag (:mod:`creg.sources.roundoff`)."""

    name = "integrated_gradients"
    needs = frozenset({Capability.LAYER_REPLAY})  # replays the blocks above its layer

    class Options(PluginOptions):
        model_config = ConfigDict(extra="forbid", frozen=True)

        steps: Annotated[int, Field(ge=2, le=MAX_STEPS)] | Literal["auto"] = Field(
            "auto", description="number of path points (integration nodes, 2 to 10000), or auto: 50 doubled "
                                "until every sample's completeness gap is at most tolerance (or max_steps)")
        tolerance: float = Field(0.05, gt=0, description="steps=auto: the completeness gap to reach, "
                                 "|sum attr - (z(x) - z(0))| / |z(x) - z(0)|")
        max_steps: int = Field(800, ge=2, le=MAX_STEPS, description="steps=auto: the most steps it doubles to")
        method: Annotated[Literal[METHODS], Lowercase] = Field(  # type: ignore[valid-type]
            "gausslegendre_log", description="integration rule: gausslegendre_log (Gauss-Legendre in log alpha "
            "from 1e-10 to 1, converges where the path's change sits near alpha = 0) or Captum's: "
            + ", ".join(METHODS[1:]))
        layer: Layer = Field(-2, description="one hidden-state index; only the blocks above it are replayed")
        chunk: int = Field(50, ge=1, description="path points replayed per call (memory vs. speed)")

    def __init__(self, **options: Any):
        super().__init__(**options)
        steps = self.options.steps
        if isinstance(steps, int) and steps < 2:
            raise ValueError(f"steps: need at least 2, got {steps}")
        self.steps: int | None = steps if isinstance(steps, int) else None
        self.method: str = self.options.method
        self.layer: int = self.options.layer
        self.chunk: int = self.options.chunk

    def request(self) -> SourceRequest:
        # the forward keeps the layer (with its graph) for the replays; IG takes its own path
        # gradients; the plain z_gt gradient at the layer (shared with gradxact and gradnorm) gives
        # the round-off diagnostic
        return SourceRequest(layers=(self.layer,), gradients=(GradientRequest(target="gt", layers=(self.layer,)),),
                             gradients_before_image=False)  # its path gradients are its replay's

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        gt = torch.tensor([s.option for s in ctx.samples])
        h = ctx.output.hidden[self.layer]
        replay = ctx.adapter.scaled_layer_replay(ctx.output, self.layer)
        attr, gap, steps = converged_integrated_gradients(
            replay, tuple(h.shape[:2]), gt, steps=self.steps, max_steps=self.options.max_steps,
            tolerance=self.options.tolerance, method=self.method, chunk=self.chunk, device=h.device)
        maps = token_relevance_maps(attr.abs(), ctx)
        for m, g in zip(maps, gap.tolist()):
            m.extra.update(completeness_gap=g if math.isfinite(g) else None, ig_steps=steps)
            if self.steps is None:
                m.extra.update(ig_tolerance=self.options.tolerance)
        return annotate(maps, ctx, ctx.gradients("gt", [self.layer]), [self.layer])
