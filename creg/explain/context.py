"""The shared state of one explained batch: the passes the run's sources asked for, planned once.

The runner builds one :class:`ExplainContext` per batch from the sources' requests
(:class:`creg.plugins.relevance.SourceRequest`, :meth:`ExplainContext.for_sources`); sources read from
it. The context knows no method; from the union of the requests it plans

* **one gradient pass**: a forward pass keeping every hidden layer any source reads or
  differentiates, and the vision activations if any source reads them or their gradient;
* **one backward pass per gradient target**: the first time a target's gradient is asked for,
  ``torch.autograd.grad`` takes it with respect to *every* layer (and the vision activations)
  declared for that target by any source, and caches the result -- so ``creg`` and
  ``random_ref``, or ``gradnorm``, ``gradxact`` and ``gradcam`` (target z_gt), share one
  backward. A gradient nobody declared (a 0.1 source returning a bare
  :class:`~creg.plugins.adapter.ForwardRequest`) is still served, with one more backward if need be.
  When the model predicts every sample of the batch correctly, a gt target and its pred twin
  (``gt``/``pred``, ``gt_contrastive``/``pred_contrastive``) are the same function of the
  logits -- same gathers, same max, same graph -- so the twin's cached gradients *are* this
  target's, bit for bit, and serve it without another backward (one host read of the
  predictions per batch decides it); and when every sample is predicted wrongly with its gt
  the runner-up, ``gt_contrastive`` (z_gt - z_pred) and ``pred_contrastive`` (z_pred - z_gt)
  are each other's negation, so the twin's cached gradients negated (exact in floating point:
  the backward is linear in its seed and rounding is symmetric) serve it;
* **attention maps** only if a source requests them, streamed layer by layer to the readers of
  those sources (:meth:`creg.plugins.relevance.RelevanceSource.attention_reader`). An adapter whose
  attention maps do not change the numerics of a pass (``attentions_preserve_numerics = True``:
  the transformers adapters compute them beside the model's own kernel,
  :mod:`creg.hf.attention_stream`) streams them from the gradient pass itself: no second
  forward. Any other adapter gets a separate no-grad forward for them. Either way the gradient
  pass is the same forward (same attention kernels, same graph, nothing kept for backward)
  whether or not an attention source is present, which is what makes a source's numbers
  independent of the other sources in the run.
"""

from __future__ import annotations

from functools import cached_property
from typing import Sequence

import numpy as np
import torch

from creg.core.compass import uniform_cell_xy
from creg.core.sample import Sample
from creg.plugins.adapter import (
    AttentionCallback,
    ForwardOutput,
    ForwardRequest,
    VisionLayout,
    VLMAdapter,
)
from creg.plugins.relevance import (
    HEAD_MEAN,
    AttentionReader,
    RelevanceSource,
    SourceRequest,
    Target,
)

__all__ = ["DEFAULT_CELL_PX", "NEGATED_WHEN_RUNNER_UP", "TWIN_WHEN_CORRECT", "VISION", "ExplainContext", "Target",
           "contrastive_target", "default_layout", "merge_requests"]

#: Cell size (px) of the grid used for geometry-only sources when no model runs.
DEFAULT_CELL_PX = 28

#: Key of the vision-activation gradients in :meth:`ExplainContext.gradients`.
VISION = "vision"


def merge_requests(requests: Sequence[SourceRequest | ForwardRequest]) -> SourceRequest:
    """The smallest request that serves all of ``requests`` (:meth:`SourceRequest.union`)."""
    return SourceRequest.union(requests)


#: target -> the target that is the same function of the logits when every prediction is correct.
TWIN_WHEN_CORRECT: dict[str, str] = {"gt": "pred", "pred": "gt", "gt_contrastive": "pred_contrastive",
                                     "pred_contrastive": "gt_contrastive"}


#: target -> the target that is its negation when every prediction is wrong with the gt the runner-up.
NEGATED_WHEN_RUNNER_UP: dict[str, str] = {"gt_contrastive": "pred_contrastive", "pred_contrastive": "gt_contrastive"}


def contrastive_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """tau = z_tgt - z_neg (Eq. 1) for a batch.

    ``logits``: (b, c); ``target``: (b,) long, the targeted class (gt or prediction).
    z_neg is the prediction when it differs from the target, otherwise the second-highest logit
    -- in both cases the highest logit among the *other* classes.
    """
    z_tgt = logits.gather(1, target[:, None])[:, 0]
    z_neg = _others_max(logits, target).values
    return z_tgt - z_neg


def _others_max(logits: torch.Tensor, target: torch.Tensor):
    """The highest logit among the classes other than ``target`` (values and indices, ``(b,)`` each)."""
    return logits.masked_fill(torch.nn.functional.one_hot(target, logits.shape[1]).bool(), float("-inf")).max(dim=1)


class ExplainContext:
    """One batch of samples, the adapter (or None) and the passes planned from ``request``.

    ``request``: the union of the run's source requests (a :class:`SourceRequest`, a list of
    them, or a bare :class:`ForwardRequest`). ``on_attention``: an extra callback that sees every
    layer of the attention pass, if one runs.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        adapter: VLMAdapter | None,
        request: SourceRequest | ForwardRequest | Sequence[SourceRequest | ForwardRequest] = SourceRequest(),
        *,
        seed: int = 0,
        on_attention: AttentionCallback | None = None,
    ):
        self.samples = list(samples)
        self.adapter = adapter
        self.request = SourceRequest.union(request if isinstance(request, (list, tuple)) else [request])
        self.seed = seed
        self._on_attention = on_attention
        #: target -> (layers, vision) to differentiate in that target's one backward pass.
        self._plan: dict[str, tuple[tuple[int, ...], bool]] = {
            g.target: (g.layers, g.vision) for g in self.request.gradients
        }
        #: target -> {layer index or VISION: gradient}; filled lazily, one backward per target.
        self._grads: dict[str, dict[int | str, torch.Tensor]] = {}
        #: sources that read attention maps, served together by the first attention pass.
        self._attention_sources: list[RelevanceSource] = []
        self._readers: dict[RelevanceSource, AttentionReader] = {}
        self._attention_output: ForwardOutput | None = None
        #: number of backward passes taken (one per target when every source declared its gradients).
        self.backward_passes = 0
        #: number of targets served from their twin's backward (every prediction correct, or its
        #: negation: every prediction wrong with the gt the runner-up).
        self.shared_backwards = 0
        #: number of attention passes run (one when the readers were registered by for_sources).
        self.attention_passes = 0

    @classmethod
    def for_sources(
        cls,
        samples: Sequence[Sample],
        adapter: VLMAdapter | None,
        sources: Sequence[RelevanceSource],
        *,
        seed: int = 0,
        on_attention: AttentionCallback | None = None,
    ) -> "ExplainContext":
        """The context for ``sources`` on one batch: their requests merged (geometry-only sources
        and runs without a model request nothing), attention readers registered up front so that
        one attention pass serves them all."""
        model_sources = [s for s in sources if s.needs_model] if adapter is not None else []
        requests = [SourceRequest.of(s.request()) for s in model_sources]
        ctx = cls(samples, adapter, requests, seed=seed, on_attention=on_attention)
        ctx._attention_sources = [s for s, r in zip(model_sources, requests) if r.attentions]
        return ctx

    # -- the gradient pass -------------------------------------------------------------------
    @cached_property
    def output(self) -> ForwardOutput:
        """The gradient pass (run on first use): class logits, hidden states, vision activations."""
        if self.adapter is None:
            raise RuntimeError("this source needs a model, but the run has no adapter (--adapter none)")
        request = self.request.forward_request()
        if self._attention_sources and getattr(self.adapter, "attentions_preserve_numerics", False):
            # the adapter streams attention maps without changing the pass: one pass serves both
            return self._stream_attentions(self._attention_sources, request.model_copy(update={"attentions": True}))
        return self.adapter.forward(self.samples, request)

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

        The first call for a target takes one backward pass for everything the run's sources
        declared for that target (a target nobody declared: every hidden layer of the pass),
        plus anything this call asks for beyond it, and caches it -- or takes it from the twin
        target's cache when every prediction is correct (module docstring). Samples are
        independent in the batch, so the gradient of the sum of per-sample targets is each
        sample's own gradient.
        """
        out = self.output
        absent = [l for l in layers if l not in out.hidden]
        if absent:
            raise KeyError(f"layers {absent} were not requested in the forward pass")
        if vision and out.vision_activations is None:
            raise KeyError("vision activations were not requested in the forward pass")
        cache = self._grads.setdefault(target, {})
        if any(l not in cache for l in layers) or (vision and VISION not in cache):
            planned_layers, planned_vision = self._plan.get(target, (tuple(out.hidden), False))
            keys = [l for l in dict.fromkeys([*planned_layers, *layers]) if l not in cache and l in out.hidden]
            with_vision = VISION not in cache and out.vision_activations is not None and (vision or planned_vision)
            twin = self._grads.get(TWIN_WHEN_CORRECT.get(target, ""), {})
            negated = self._grads.get(NEGATED_WHEN_RUNNER_UP.get(target, ""), {})
            if twin and all(k in twin for k in keys) and (not with_vision or VISION in twin) and self.all_correct:
                cache.update({k: twin[k] for k in keys})
                if with_vision:
                    cache[VISION] = twin[VISION]
                self.shared_backwards += 1
            elif (negated and all(k in negated for k in keys) and (not with_vision or VISION in negated)
                  and self.all_wrong_gt_runner_up):
                cache.update({k: -negated[k] for k in keys})
                if with_vision:
                    cache[VISION] = [-g for g in negated[VISION]]
                self.shared_backwards += 1
            else:
                tensors = [out.hidden[l] for l in keys] + (list(out.vision_activations) if with_vision else [])
                tau = self.target_values(target).sum()
                grads = torch.autograd.grad(tau, tensors, retain_graph=True, allow_unused=True)
                self.backward_passes += 1
                grads = [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, tensors)]
                cache.update(zip(keys, grads))
                if with_vision:
                    cache[VISION] = grads[len(keys):]
        result: dict[int | str, torch.Tensor] = {l: cache[l] for l in layers}
        if vision:
            result[VISION] = cache[VISION]
        return result

    @cached_property
    def all_correct(self) -> bool:
        """Does the model predict every sample's gt option? (one host read per batch)"""
        logits = self.output.class_logits.detach()
        gt = torch.tensor([s.option for s in self.samples], device=logits.device)
        return bool((logits.argmax(dim=1) == gt).all())

    @cached_property
    def all_wrong_gt_runner_up(self) -> bool:
        """Is every sample predicted wrongly, with its gt option the runner-up? Then tau_gt = z_gt -
        z_pred and tau_pred = z_pred - z_gt (Eq. 1's z_neg picked as :func:`contrastive_target`
        picks it). One host read per batch."""
        logits = self.output.class_logits.detach()
        gt = torch.tensor([s.option for s in self.samples], device=logits.device)
        pred = logits.argmax(dim=1)
        runner_up = _others_max(logits, pred).indices
        return bool(((pred != gt) & (runner_up == gt) & (_others_max(logits, gt).indices == pred)).all())

    @property
    def differentiated_targets(self) -> set[str]:
        """The gradient targets a backward pass has been taken for."""
        return {t for t, grads in self._grads.items() if grads}

    # -- the attention pass ------------------------------------------------------------------
    def attention_reader(self, source: RelevanceSource) -> AttentionReader:
        """``source``'s reader after the attention pass has streamed every decoder layer to it.

        The first call runs the pass (no grad, separate from the gradient pass) for every source
        registered by :meth:`for_sources` at once; a source that was not registered gets a pass
        of its own.
        """
        if source in self._attention_sources:
            self.output  # noqa: B018 -- may be the pass that streams the attention maps
        if source not in self._readers:
            if self.adapter is None:
                raise RuntimeError("attention maps need a model, but the run has no adapter (--adapter none)")
            pending = [s for s in self._attention_sources if s not in self._readers]
            with torch.no_grad():
                self._stream_attentions(pending if source in pending else [*pending, source], ForwardRequest(attentions=True))
        return self._readers[source]

    @property
    def attention_output(self) -> ForwardOutput:
        """The attention pass's output (class logits, layouts, answer positions); it has run."""
        if self._attention_output is None:
            raise RuntimeError("no attention pass has run (call attention_reader first)")
        return self._attention_output

    def _stream_attentions(self, sources: list[RelevanceSource], request: ForwardRequest) -> ForwardOutput:
        """Run a pass with ``request`` (attentions on), streaming each layer to ``sources``' readers."""
        readers = {s: s.attention_reader() for s in sources}
        user = self._on_attention if self._attention_output is None else None
        seen = 0

        def fan_out(layer_idx: int, attn: torch.Tensor) -> None:
            nonlocal seen
            if layer_idx != seen:
                raise RuntimeError(f"attention of layer {layer_idx} arrived after {seen} layers")
            seen += 1
            for reader in readers.values():
                reader.update(layer_idx, attn)
            if user is not None:
                user(layer_idx, attn)

        if user is None and all(getattr(r, HEAD_MEAN, False) for r in readers.values()):
            setattr(fan_out, HEAD_MEAN, True)  # every receiver reads the mean over heads only
        output = self.adapter.forward(self.samples, request, on_attention=fan_out)
        if seen != self.adapter.num_layers:
            raise RuntimeError(f"the adapter streamed {seen} attention maps for {self.adapter.num_layers} decoder layers")
        self._attention_output = output
        self._readers.update(readers)
        self.attention_passes += 1
        return output

    def release(self) -> None:
        """Drop the passes' outputs, the cached gradients and the attention readers (the autograd
        graph and saved activations go with them), e.g. before COS's occluded passes. Layouts
        needed afterwards must be read first; a later read of :attr:`output` runs the pass again."""
        self.__dict__.pop("output", None)
        self.__dict__.pop("all_correct", None)
        self.__dict__.pop("all_wrong_gt_runner_up", None)
        self._grads.clear()
        self._readers.clear()
        self._attention_output = None

    def rng(self, i: int, salt: str) -> np.random.Generator:
        """A generator fixed by the run seed, the sample id and ``salt`` (e.g. the source name)."""
        key = f"{self.seed}/{self.samples[i].id}/{salt}".encode()
        return np.random.default_rng(list(key))


def default_layout(image_size: tuple[int, int], cell_px: int = DEFAULT_CELL_PX) -> VisionLayout:
    """A grid of ~``cell_px`` cells tiling the whole image (for runs without a model)."""
    w, h = image_size
    gw, gh = max(1, round(w / cell_px)), max(1, round(h / cell_px))
    return VisionLayout(token_index=torch.empty(0, dtype=torch.long), grid_hw=(gh, gw), cell_xy=uniform_cell_xy((gh, gw), image_size))
