"""The contract tests every :class:`~creg.plugins.relevance.RelevanceSource` must pass, as one base class.

A third-party source package runs them by subclassing :class:`SourceContract` in its own test
suite and naming the source class (and, if needed, its options)::

    from creg.testing import SourceContract
    from my_pkg.source import MySource

    class TestMySource(SourceContract):
        source_class = MySource
        source_options = {"layers": [-2, -3]}

By default the source runs on :class:`creg.testing.fake_vlm.FakeVLMAdapter` (a small real torch
model that honours the adapter contract) and on generated noise images of two sizes, batched
together (so the batch is padded). Override the ``adapter`` fixture to run it on your own model.

What is checked: one map per sample, in order; each map's shape (``values`` 2-D, ``cell_xy``
``(h, w, 2)``, no relevance on cells off the image); finite, non-negative values with some mass; determinism (two
fresh contexts with the same seed give identical maps); the request is honoured (the source
reads nothing it did not declare in ``request()`` -- no undeclared hidden layer, gradient
target or attention pass -- and takes at most one backward pass per declared target); the
result does not depend on the other sources of the run (identical, bit for bit, when a source
that requests every layer, every gradient target, the vision activations and the attention maps
shares the batch); unknown options are refused; and a geometry-only source (``needs_model =
False``) runs without a model.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from creg.core.sample import Sample, make_sample
from creg.explain.context import ExplainContext
from creg.plugins.adapter import VLMAdapter
from creg.plugins.relevance import (
    GradientRequest,
    RelevanceMap,
    RelevanceSource,
    SourceRequest,
)
from creg.testing.adapter_contract import draw_image
from creg.testing.fake_vlm import FakeVLMAdapter

#: Where B sits relative to A in the generated samples, as offsets of B's centre in fractions of
#: the image (one sample per relation, cycled).
_OFFSETS = {"left": (-0.3, 0.0), "right": (0.3, 0.0), "above": (0.0, -0.3), "below": (0.0, 0.3)}


def contract_samples(image_sizes: tuple[tuple[int, int], ...], n: int = 4) -> list[Sample]:
    """``n`` samples on seeded noise images (sizes cycled), A in the middle, B left/right/above/below."""
    samples = []
    for i in range(n):
        w, h = image_sizes[i % len(image_sizes)]
        relation = list(_OFFSETS)[i % 4]
        dx, dy = _OFFSETS[relation]
        cx, cy = 0.5 * w, 0.5 * h
        bx, by = cx + dx * w, cy + dy * h
        half = 0.08 * min(w, h)
        samples.append(make_sample(
            id=f"contract-{i}", image=draw_image((w, h), noise_seed=100 + i), image_size=(w, h),
            ref_name="red square", ref_box={"x0": cx - half, "y0": cy - half, "x1": cx + half, "y1": cy + half},
            tgt_name="blue circle", tgt_box={"x0": bx - half, "y0": by - half, "x1": bx + half, "y1": by + half},
            relation=relation,
        ))
    return samples


class _Everything(RelevanceSource):
    """A companion that requests (and reads) all a batch can give: every hidden layer, every
    gradient target at every layer, the vision activations' gradient and the attention maps."""

    name = "contract_everything"

    def __init__(self, num_layers: int, vision: bool = True, attentions: bool = True):
        super().__init__()
        self.layers = tuple(range(-2, -num_layers - 2, -1))
        self.vision = vision
        self.attentions = attentions

    def request(self) -> SourceRequest:
        targets = ("gt", "pred", "gt_contrastive", "pred_contrastive")
        return SourceRequest(
            layers=self.layers, vision_activations=self.vision, attentions=self.attentions,
            gradients=tuple(GradientRequest(target=t, layers=self.layers, vision=self.vision) for t in targets),
        )

    def attention_reader(self):
        class Count:
            layers = 0

            def update(self, layer_idx: int, attn: torch.Tensor) -> None:
                self.layers += 1

        return Count()

    def explain(self, ctx: ExplainContext) -> list[RelevanceMap]:
        for g in self.request().gradients:
            ctx.gradients(g.target, g.layers, vision=g.vision)
        if self.attentions:
            ctx.attention_reader(self)
        return []


class SourceContract:
    """Combined contract tests for a :class:`~creg.plugins.relevance.RelevanceSource`.

    Set ``source_class`` (and ``source_options``) in a ``Test*`` subclass, or override the
    ``source`` fixture; override ``adapter`` to use another model.
    """

    #: the source under test.
    source_class: ClassVar[type[RelevanceSource] | None] = None
    #: keyword options it is built with.
    source_options: ClassVar[dict[str, Any]] = {}
    #: (width, height) of the generated images, batched together.
    image_sizes: ClassVar[tuple[tuple[int, int], ...]] = ((128, 96), (96, 160))
    #: samples per batch.
    batch_size: ClassVar[int] = 4
    #: the source may give a sample no relevance at all (e.g. a signal that is exactly zero);
    #: False requires some mass on every sample.
    allow_empty_maps: ClassVar[bool] = False

    # -- fixtures ----------------------------------------------------------------------------
    @pytest.fixture
    def source(self) -> RelevanceSource:
        """A source instance (default: ``source_class(**source_options)``)."""
        if self.source_class is None:
            raise NotImplementedError(f"{type(self).__name__} must set source_class or provide a `source` fixture")
        return self.source_class(**self.source_options)

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls) -> VLMAdapter:
        """The model the source runs on (default: a 5-layer :class:`FakeVLMAdapter`)."""
        return FakeVLMAdapter(d=32, dv=16, heads=4, num_layers=5, seed=3)

    @pytest.fixture(scope="class")
    @classmethod
    def samples(cls) -> list[Sample]:
        return contract_samples(cls.image_sizes, cls.batch_size)

    def _context(self, samples, adapter, sources, seed: int = 0) -> ExplainContext:
        return ExplainContext.for_sources(samples, adapter if any(s.needs_model for s in sources) else None,
                                          sources, seed=seed)

    def _maps(self, source, samples, adapter, seed: int = 0) -> list[RelevanceMap]:
        return source.explain(self._context(samples, adapter, [source], seed))

    # -- what a source is --------------------------------------------------------------------
    def test_has_name_and_description(self, source):
        assert source.name and source.name == source.name.strip() and "/" not in source.name
        assert source.description, (f"{type(source).__name__} needs a description (shown by creg list): give it at "
                                    "registration and name the class as get_plugins().load('source', NAME), "
                                    "or declare it on the class")

    def test_options_are_validated(self, source):
        cls = type(source)
        assert isinstance(source.options, cls.Options)
        with pytest.raises((TypeError, ValueError)):
            cls(**{**self.source_options, "no_such_option_xyz": 1})

    def test_request_is_a_source_request(self, source):
        request = SourceRequest.of(source.request())
        if not source.needs_model:
            assert request == SourceRequest(), "a geometry-only source must not request model outputs"

    # -- what it returns ---------------------------------------------------------------------
    def test_one_map_per_sample_with_valid_shapes_and_values(self, source, samples, adapter):
        maps = self._maps(source, samples, adapter)
        assert isinstance(maps, list) and len(maps) == len(samples), (
            f"{source.name} returned {len(maps)} maps for {len(samples)} samples")
        for s, m in zip(samples, maps):
            assert isinstance(m, RelevanceMap)
            assert m.values.dim() == 2 and m.values.numel() > 0, tuple(m.values.shape)
            assert torch.isfinite(m.values).all(), f"{source.name}: non-finite relevance on {s.id}"
            assert (m.values >= 0).all(), f"{source.name}: negative relevance on {s.id}"
            if not self.allow_empty_maps:
                assert m.values.sum() > 0, f"{source.name}: no relevance at all on {s.id}"
            if m.cell_xy is not None:
                assert tuple(m.cell_xy.shape) == (*m.values.shape, 2)
                w, h = s.image_size
                xy = m.cell_xy.double()
                assert torch.isfinite(xy).all()
                on_image = (xy[..., 0] >= 0) & (xy[..., 0] <= w) & (xy[..., 1] >= 0) & (xy[..., 1] <= h)
                # cells may lie on padding outside the image (pad-to-square), but carry no relevance there
                assert (m.values[~on_image] == 0).all(), f"{source.name}: relevance off the image of {s.id}"

    def test_deterministic(self, source, samples, adapter):
        a = self._maps(source, samples, adapter, seed=5)
        b = self._maps(type(source)(**self.source_options), samples, adapter, seed=5)
        for ma, mb in zip(a, b):
            assert torch.equal(ma.values, mb.values), f"{source.name} is not deterministic for a fixed seed"
            assert (ma.ref_box is None) == (mb.ref_box is None) and ma.ref_box == mb.ref_box

    def test_without_a_model_when_it_needs_none(self, source, samples):
        if source.needs_model:
            ctx = ExplainContext(samples, None)
            with pytest.raises(RuntimeError):
                source.explain(ctx)
        else:
            maps = source.explain(ExplainContext(samples, None))
            assert len(maps) == len(samples)

    # -- the request is honoured -------------------------------------------------------------
    def test_reads_only_what_it_requested(self, source, samples, adapter):
        """On a context planned from its own request alone, the source neither touches an
        undeclared layer (KeyError) nor runs an undeclared backward or attention pass."""
        if not source.needs_model:
            pytest.skip("a geometry-only source requests nothing")
        request = SourceRequest.of(source.request())
        ctx = ExplainContext(samples, adapter, request)
        source.explain(ctx)
        targets = {g.target for g in request.gradients}
        assert ctx.backward_passes <= len(targets), (
            f"{source.name} took {ctx.backward_passes} backward passes but declared {len(targets)} gradient targets")
        extra = ctx.differentiated_targets - targets
        assert not extra, f"{source.name} read gradients of undeclared targets {sorted(extra)}"
        if not request.attentions:
            assert ctx.attention_passes == 0, f"{source.name} ran an attention pass it did not request"

    def test_independent_of_the_other_sources_in_the_run(self, source, samples, adapter):
        """Bit-identical maps when a companion requesting everything shares the batch."""
        if not source.needs_model:
            pytest.skip("a geometry-only source reads no model output")
        alone = self._maps(source, samples, adapter)
        companion = _Everything(adapter.num_layers, vision=True, attentions=True)
        for order in ((companion, source), (source, companion)):
            ctx = ExplainContext.for_sources(samples, adapter, list(order))
            results = {id(s): s.explain(ctx) for s in order}
            for a, b in zip(alone, results[id(source)]):
                assert torch.equal(a.values, b.values), f"{source.name} changes when other sources share the run"
