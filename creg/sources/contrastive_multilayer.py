"""CREG's relevance (paper §3.2-3.3): contrastive target, multi-layer Grad x Act, softmax weights.

For each sample, with vision tokens j in V and layers l in L (default {-2, -3, -4, -5}):

* target (Eq. 1): tau = z_tgt - z_neg, z_tgt = z_pred (``creg``) or z_gt (``creg_gt``), z_neg the
  highest other logit; ``contrastive=false`` uses tau = z_tgt (Table 5's "no contrastive").
* Eq. 2: raw_j^(l) = |sum_d g_{j,d}^(l) h_{j,d}^(l)|, g^(l) = d tau / d h^(l).
* per-layer normalisation to [0, 1]: r_j^(l) = raw_j^(l) / max_j raw_j^(l) (``normalize=max``,
  default: keeps relevance ratios and zero at zero) or min-max (``normalize=minmax``).
* Eq. 3: w_l = softmax_l(max_j raw_j^(l)) on the *raw* maxima, r_j = sum_l w_l r_j^(l).

Two options go beyond the paper (docs/paper-to-code.md): ``layers=auto`` takes the layers that
``creg analyze layers`` recommends for the model (resolved once per run by ``creg run``,
:mod:`creg.execution.auto_layers`), and ``activation=h_minus_blank`` replaces h in Eq. 2 by
h - h_blank, the hidden state of the same prompt on a uniform image of the sample's size in its
mean colour (an ablation; ``activation=h``, Eq. 2 as published, is the default).
No signal: when no layer's largest raw_j^(l) reaches ``min_signal`` x |tau| (default 1e-4), the
relevance is round-off, not evidence -- per-layer normalisation would blow it up to [0, 1] and the
compass would show a confident direction. The map is then all zero: the compass reports it
(flag ``no_mass``, a uniform compass) and ``creg run`` warns. ``min_signal=0`` turns this off.

Why raw maxima: after normalisation every layer's maximum is exactly 1 (with either
normalisation), so a softmax on normalised maxima would always give uniform weights and Eq. 3
would say nothing; "softmax weights proportional to signal magnitude" only means something for
the maxima before normalisation. A layer whose relevance is all zero gets r^(l) = 0.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import BeforeValidator, ConfigDict, Field

from creg.core.blank import uniform_blank
from creg.explain.context import ExplainContext
from creg.plugins.adapter import ForwardRequest
from creg.plugins.options import PluginOptions, parse_layers
from creg.plugins.relevance import (
    GradientRequest,
    RelevanceMap,
    RelevanceSource,
    SourceRequest,
    Target,
)
from creg.sources.gradxact import grad_times_act
from creg.sources.option_types import Lowercase
from creg.sources.roundoff import annotate
from creg.sources.token_grid import relevance_map, to_grid, vision_tokens

#: the paper's default layers (Appendix A.3): the inputs of the last four decoder blocks.
DEFAULT_LAYERS = (-2, -3, -4, -5)


def normalise_per_layer(raw: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """``(l, n) -> (l, n)`` each layer's vector mapped to [0, 1] (all-zero / constant rows -> 0)."""
    top = raw.amax(dim=1, keepdim=True)
    if mode == "max":
        return torch.where(top > 0, raw / top.clamp_min(torch.finfo(raw.dtype).tiny), torch.zeros_like(raw))
    if mode == "minmax":
        low = raw.amin(dim=1, keepdim=True)
        span = top - low
        return torch.where(span > 0, (raw - low) / span.clamp_min(torch.finfo(raw.dtype).tiny), torch.zeros_like(raw))
    raise ValueError(f"normalize: expected max or minmax, got {mode!r}")


def layer_weights(raw: torch.Tensor) -> torch.Tensor:
    """Eq. 3: ``(l, n) -> (l,)``, w_l = softmax over layers of max_j raw_j^(l)."""
    return torch.softmax(raw.amax(dim=1), dim=0)


def aggregate_layers(raw: torch.Tensor, normalize: str = "max") -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3: ``(l, n)`` raw Grad x Act -> (``(n,)`` r_j = sum_l w_l r_j^(l), ``(l,)`` weights w_l)."""
    weights = layer_weights(raw)
    return torch.einsum("l,ln->n", weights, normalise_per_layer(raw, normalize)), weights


def _layers_or_auto(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return parse_layers(value)
    except ValueError as e:
        raise ValueError(str(e).removeprefix("layers: ") + " (or auto)") from None


#: hidden-state indices, or "auto": the layers ``creg analyze layers`` recommends (creg.execution.auto_layers).
LayersOrAuto = Annotated[tuple[int, ...] | Literal["auto"], BeforeValidator(_layers_or_auto)]


class CregOptions(PluginOptions):
    """Options of ``creg``, ``creg_gt`` and ``random_ref``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: LayersOrAuto = Field(DEFAULT_LAYERS, description="hidden-state indices L of Eq. 2-3, e.g. -2,-3,-4,-5 "
                                 "(the inputs of the last four decoder blocks, the paper's default), or auto: the "
                                 "layers `creg analyze layers` recommends, resolved once by `creg run`")
    contrastive: bool = Field(True, description="target tau = z_tgt - z_neg of Eq. 1; false: tau = z_tgt "
                              "(Table 5's 'no contrastive')")
    normalize: Annotated[Literal["max", "minmax"], Lowercase] = Field(
        "max", description="per-layer normalisation to [0, 1]: max (r / max r) or minmax")
    activation: Annotated[Literal["h", "h_minus_blank"], Lowercase] = Field(
        "h", description="the activation of Eq. 2: h (the paper) or h_minus_blank, g * (h - h_blank) with h_blank the "
        "hidden state on a uniform image of the sample's mean colour (our extension, an ablation)")
    min_signal: float = Field(1e-4, ge=0, allow_inf_nan=False,
                              description="no signal (an all-zero map, flagged no_mass) when no layer's largest "
                              "|sum_d g h| reaches min_signal x |tau|; 0: never")


class CregSource(RelevanceSource):
    """CREG, prediction-targeted (the paper's recommended default, §6.4).

    Options (:class:`CregOptions`): ``layers`` (default -2,-3,-4,-5, or auto), ``contrastive`` (default
    true), ``normalize`` (max | minmax, default max), ``activation`` (h | h_minus_blank, default h).
    """

    #: the layers of ``layers=auto`` when the layer analysis recommends none: the paper's default.
    auto_fallback_layers = DEFAULT_LAYERS

    name = "creg"
    #: whose logit is z_tgt in Eq. 1.
    mode = "pred"

    Options = CregOptions
    #: what its request reads, declared too: with ``layers=auto`` the request exists only once
    #: ``creg run`` has resolved the layers, after the capability check
    needs = frozenset({"layer_gradients"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        #: "auto" until ``creg run`` resolves it (creg.execution.auto_layers), with
        #: ``auto_fallback_layers`` when the analysis recommends none.
        self.layers: tuple[int, ...] | str = self.options.layers
        self.contrastive: bool = self.options.contrastive
        self.normalize: str = self.options.normalize
        self.activation: str = self.options.activation

    def _resolved_layers(self) -> tuple[int, ...]:
        if self.layers == "auto":
            raise ValueError(f"{self.name}.layers=auto is resolved by `creg run` in one process (it runs `creg analyze "
                             "layers` once); here give the layers, e.g. -2,-3,-4,-5")
        return self.layers  # type: ignore[return-value]

    @property
    def target(self) -> Target:
        return f"{self.mode}_contrastive" if self.contrastive else self.mode  # type: ignore[return-value]

    def request(self) -> SourceRequest:
        return SourceRequest(gradients=(GradientRequest(target=self.target, layers=self._resolved_layers()),),
                             gradients_before_image=False)  # Eq. 2 reads the vision tokens only

    def activations(self, ctx: ExplainContext) -> dict[int, torch.Tensor]:
        """``{layer: (b, seq, d)}`` the activation of Eq. 2: h, or h - h_blank (``activation=h_minus_blank``)."""
        hidden = {l: ctx.output.hidden[l] for l in self.layers}
        if self.activation == "h":
            return hidden

        blanks = [uniform_blank(s).load_image() for s in ctx.samples]
        with torch.no_grad():
            ref = ctx.adapter.forward(ctx.samples, ForwardRequest(layers=tuple(self.layers)), images=blanks)
        out = {}
        for l, h in hidden.items():
            hb = ref.hidden[l].detach()
            if hb.shape != h.shape:
                raise ValueError(f"layer {l}: the blank image gives hidden states of shape {tuple(hb.shape)}, the "
                                 f"image {tuple(h.shape)}: h - h_blank needs the same token layout")
            out[l] = h.detach() - hb.to(h.device, h.dtype)
        return out

    def vision_relevance(self, ctx: ExplainContext) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per sample: (``(n_vis,)`` combined relevance r_j, ``(l,)`` layer weights w_l)."""
        grads = ctx.gradients(self.target, self._resolved_layers())
        acts = self.activations(ctx)
        # each layer's hidden state is on the device of the block that consumes it (a device map may
        # spread them): the per-layer (b, seq) relevances meet on the first one's
        raw = [grad_times_act(grads[l], acts[l]) for l in self.layers]
        raw_all = torch.stack([r.to(raw[0].device) for r in raw], dim=1)  # b l seq
        floor = self.options.min_signal * ctx.target_values(self.target).detach().abs().to(raw_all.device)  # b
        results = []
        for i in range(len(ctx.samples)):
            raw = vision_tokens(raw_all[i].T, ctx.layout(i)).T  # l n_vis
            if not bool(raw.max() >= floor[i]) and self.options.min_signal > 0:  # no signal in any layer
                raw = torch.zeros_like(raw)
            results.append(aggregate_layers(raw, self.normalize))
        return results

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        return self.diagnose(ctx, [
            relevance_map(to_grid(r, ctx.layout(i)), ctx.layout(i))
            for i, (r, _) in enumerate(self.vision_relevance(ctx))
        ])

    def diagnose(self, ctx: ExplainContext, maps: list[RelevanceMap]) -> list[RelevanceMap]:
        """``maps`` with each layer's cancellation ratio and round-off flag (:mod:`creg.sources.roundoff`)."""
        return annotate(maps, ctx, ctx.gradients(self.target, self.layers), self.layers)


class CregGtSource(CregSource):
    """CREG, ground-truth-targeted: z_tgt = z_gt in Eq. 1. Same options as ``creg``."""

    name = "creg_gt"
    mode = "gt"
