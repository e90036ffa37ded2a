"""The shared state of one explained batch: one forward pass, cached gradients.

The runner builds one :class:`ExplainContext` per batch with the union of the sources'
:class:`~creg.adapter.ForwardRequest`; sources read from it. Gradients of a target are taken
once (``torch.autograd.grad`` with ``retain_graph``) and cached, so ``creg`` and ``gradxact``,
or ``gradnorm`` and ``gradcam`` with the same target, share one backward pass.

When the request asks for attentions, the context owns the ``on_attention`` fan-out: every
streamed layer first updates the attention rollout's running product (:class:`AttentionRollout`,
read by the ``attention_rollout`` source through :attr:`ExplainContext.attention_rollout`),
then goes to the runner's own callback, if any. Only one layer's map is alive at a time.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal, Sequence

import numpy as np
import torch

from .adapter import ForwardOutput, ForwardRequest, VisionLayout, VLMAdapter
from .compass import uniform_cell_xy
from .sample import Sample

#: Gradient targets: a (b,) function of the class logits.
#: ``gt`` = z_gt, ``pred`` = z_pred; ``*_contrastive`` = Eq. 1.
Target = Literal["gt", "pred", "gt_contrastive", "pred_contrastive"]

#: Cell size (px) of the grid used for geometry-only sources when no model runs.
DEFAULT_CELL_PX = 28

#: Key of the vision-activation gradients in :meth:`ExplainContext.gradients`.
VISION = "vision"


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
        self._rollout = AttentionRollout() if request.attentions else None
        #: target -> {layer index or VISION: gradient}; filled lazily, one backward per target.
        self._grads: dict[str, dict[int | str, torch.Tensor]] = {}

    @cached_property
    def output(self) -> ForwardOutput:
        """The one forward pass (run on first use)."""
        if self.adapter is None:
            raise RuntimeError("this source needs a model, but the run has no adapter (--adapter none)")
        callback = self._on_attention
        if self._rollout is not None:
            rollout, user = self._rollout, self._on_attention

            def callback(layer_idx: int, attn: torch.Tensor) -> None:
                rollout.update(layer_idx, attn)
                if user is not None:
                    user(layer_idx, attn)

        return self.adapter.forward(self.samples, self.request, on_attention=callback)

    @property
    def attention_rollout(self) -> torch.Tensor:
        """``(b, seq, seq)`` rollout product over all decoder layers (Abnar & Zuidema 2020).

        Needs ``request.attentions``; runs the forward pass if it has not run yet.
        """
        if self._rollout is None:
            raise RuntimeError("attention rollout needs ForwardRequest(attentions=True)")
        self.output  # noqa: B018 -- the forward pass streams the layers into the rollout
        if self._rollout.layers_seen != self.adapter.num_layers:
            raise RuntimeError(
                f"the adapter streamed {self._rollout.layers_seen} attention maps for "
                f"{self.adapter.num_layers} decoder layers"
            )
        return self._rollout.product

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

    def gradients(self, target: Target, layers: Sequence[int], *, vision: bool = False) -> dict[int | str, torch.Tensor]:
        """d target / d hidden[layer] for each layer, ``(b, seq, d)``; with ``vision=True`` also
        d target / d vision activations under the key :data:`VISION` (a list of ``(H_p, W_p, d_v)``).

        One backward pass per target computes the gradients of *every* requested hidden layer at
        once (reaching the earliest requested layer costs the same either way), and is cached.
        When the forward kept vision activations (GradCAM is in the run), the backward of a
        plain target (``gt``/``pred``, GradCAM's kind of target) also reaches them, so GradCAM and
        the layer-(-2) baselines with target z_gt share a single backward pass. Contrastive
        targets stop at the earliest hidden layer unless asked for ``vision``.

        Samples are independent in the batch, so the gradient of the sum of per-sample targets
        is each sample's own gradient.
        """
        out = self.output
        absent = [l for l in layers if l not in out.hidden]
        if absent:
            raise KeyError(f"layers {absent} were not requested in the forward pass")
        if vision and out.vision_activations is None:
            raise KeyError("vision activations were not requested in the forward pass")
        cache = self._grads.setdefault(target, {})
        missing_layers = [l for l in out.hidden if l not in cache]
        wants_vision = out.vision_activations is not None and VISION not in cache and (
            vision or (not cache and target in ("gt", "pred"))
        )
        need = [l for l in layers if l not in cache] + ([VISION] if vision and VISION not in cache else [])
        if need:
            keys: list[int | str] = list(missing_layers)
            tensors = [out.hidden[l] for l in missing_layers]
            if wants_vision:
                keys.append(VISION)
                tensors.extend(out.vision_activations)
            tau = self.target_values(target).sum()
            grads = torch.autograd.grad(tau, tensors, retain_graph=True, allow_unused=True)
            grads = [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, tensors)]
            for k, g in zip(missing_layers, grads):
                cache[k] = g
            if wants_vision:
                cache[VISION] = list(grads[len(missing_layers):])
        result: dict[int | str, torch.Tensor] = {l: cache[l] for l in layers}
        if vision:
            result[VISION] = cache[VISION]
        return result

    def rng(self, i: int, salt: str) -> np.random.Generator:
        """A generator fixed by the run seed, the sample id and ``salt`` (e.g. the source name)."""
        key = f"{self.seed}/{self.samples[i].id}/{salt}".encode()
        return np.random.default_rng(list(key))


class AttentionRollout:
    """Attention rollout (Abnar & Zuidema 2020) accumulated while the layers stream by.

    For each decoder layer ``l`` (in order) with attention ``A_l`` ``(b, heads, q, k)``:
    heads are averaged, the identity (residual) is added and rows are re-normalised,
    ``Â_l = (mean_heads A_l + I) / rowsum``; the product is ``R = Â_L @ ... @ Â_1``
    ``(b, q, k)``. Only the running product and the current layer's map are alive.
    Rows of padding queries (all keys masked, possibly NaN) are treated as zero attention.
    """

    def __init__(self) -> None:
        self.product: torch.Tensor | None = None
        self.layers_seen = 0

    def update(self, layer_idx: int, attn: torch.Tensor) -> None:
        if layer_idx != self.layers_seen:
            raise RuntimeError(f"attention of layer {layer_idx} arrived after {self.layers_seen} layers")
        with torch.no_grad():
            a = torch.nan_to_num(attn.detach().float().mean(dim=1))  # b q k
            a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
            a = a / a.sum(dim=-1, keepdim=True)
            self.product = a if self.product is None else torch.bmm(a, self.product)
        self.layers_seen += 1


def default_layout(image_size: tuple[int, int], cell_px: int = DEFAULT_CELL_PX) -> VisionLayout:
    """A grid of ~``cell_px`` cells tiling the whole image (for runs without a model)."""
    w, h = image_size
    gw, gh = max(1, round(w / cell_px)), max(1, round(h / cell_px))
    return VisionLayout(token_index=torch.empty(0, dtype=torch.long), grid_hw=(gh, gw), cell_xy=uniform_cell_xy((gh, gw), image_size))
