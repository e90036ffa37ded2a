"""The contract tests every :class:`~creg.plugins.adapter.VLMAdapter` must pass, as one base class.

A third-party adapter package runs them by subclassing :class:`AdapterContract` in its own
test suite and providing an ``adapter`` fixture::

    import pytest
    from creg.plugins.adapter import AdapterConfig
    from creg.testing import AdapterContract
    from my_pkg.adapter import MyAdapter

    class TestMyAdapter(AdapterContract):
        @pytest.fixture(scope="class")
        @classmethod
        def adapter(cls):
            return MyAdapter.load(AdapterConfig(model="path/or/hub-id"))

What the adapter cannot do is *declared*: left out of the adapter class's ``provides``
(:mod:`creg.plugins.capabilities`), or on the test class (``supports_attentions = False``,
``supports_vision_activations = False``); the matching tests then check that asking for it
fails clearly instead of being skipped silently.

The checks run on small generated images (``image_sizes``, one of them non-square) and need no
trained model: they hold for a randomly initialised one. The geometric checks draw a bright
marker on a dark image and require that the vision cell whose embedding (hidden-state index 0)
changes most is a cell whose pixel footprint, taken from ``cell_xy``, covers the marker -- this
ties ``token_index`` order, ``grid_hw`` and ``cell_xy`` together. Markers are small and sit
near the image's edges, so a ``cell_xy`` that ignores a centre crop or padding misses them; for
a multi-grid layout (tiles, thumbnail, base image) the marker must land in the right cell of
*every* grid that covers it.

Checks against the *checkpoint* -- not against the adapter's own code -- need the adapter to
expose the checkpoint's versions (creg's :class:`creg.hf.HFAdapter` does;
:mod:`creg.hf.checkpoint_references`): ``checkpoint_chat(question, answer)`` (the checkpoint's
chat template; ``chat`` must equal it), ``checkpoint_inputs(texts, images)`` (the checkpoint's
processor, or where it cannot be built here the adapter's reference path -- the test names which
in a :class:`ReferenceUsed` warning; ``encode_texts`` must give the same ``input_ids``) and
``reference_vision_activations(samples)`` (what the model's image-feature path reads; GradCAM's
activations must equal it). Without them the test is skipped with the reason.

The marker tests run on every size in ``image_sizes`` and ``extra_marker_sizes``: by default a
size that processors resize or round (larger than a tiny checkpoint's maximum, no multiple of
common patch sizes) and a 3:2 one that tiles into 3 x 2 tiles of 112 px. The contract fails when
no test image is resized (every grid's cells have the same pixel pitch), since a ``cell_xy`` laid
over the resized canvas instead of the original image is then invisible.

Checks against the model's own outputs need the adapter to expose them (creg's
:class:`creg.hf.HFAdapter` does): ``reference_hidden_states(samples)`` (transformers'
``output_hidden_states``; hidden-state indices must match it) and ``answer_logits(samples)``
(teacher-forced option logits; the class logits must match them). An adapter without them (the
0.1 contract) still passes: those two tests are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable, ClassVar, Iterator

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from creg.core.compass import uniform_cell_xy
from creg.core.prompts import DEFAULT_PROMPT, render_prompt
from creg.core.sample import ImageUnreadable, InvalidSample, Sample, make_sample
from creg.explain.occlusion import occluded_class_logits
from creg.plugins.adapter import (
    ForwardOutput,
    ForwardRequest,
    OccludedImage,
    VisionLayout,
    VLMAdapter,
)
from creg.plugins.capabilities import Capability, adapter_provides

#: A marker as fractions (x0, y0, x1, y1) of the image: off-centre in both axes, so that a grid
#: flipped or transposed in either direction moves it.
#: Small, and where a centre crop of a non-square image (which keeps its middle) bites: about a
#: quarter of the way in from an edge. A ``cell_xy`` that ignores the crop (or padding) maps the
#: cells the marker changes away from it, at either marker, on wide and tall images alike.
MARKERS: dict[str, tuple[float, float, float, float]] = {
    "top_right": (0.62, 0.24, 0.76, 0.38),
    "bottom_left": (0.24, 0.62, 0.38, 0.76),
}

BACKGROUND = (24, 24, 24)
MARKER_COLOUR = (250, 250, 250)


def _marker_box(size: tuple[int, int], where: str) -> tuple[int, int, int, int]:
    w, h = size
    fx0, fy0, fx1, fy1 = MARKERS[where]
    return round(fx0 * w), round(fy0 * h), round(fx1 * w), round(fy1 * h)


def draw_image(size: tuple[int, int], marker: str | None = None, *, noise_seed: int | None = None):
    """A ``size`` = (width, height) RGB image: dark, optionally seeded noise, optionally a marker."""

    if noise_seed is not None:
        g = torch.Generator().manual_seed(noise_seed)
        pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=g, dtype=torch.uint8)
        image = Image.fromarray(pixels.numpy(), "RGB")
    else:
        image = Image.new("RGB", size, BACKGROUND)
    if marker is not None:
        x0, y0, x1, y1 = _marker_box(size, marker)
        ImageDraw.Draw(image).rectangle([x0, y0, x1 - 1, y1 - 1], fill=MARKER_COLOUR)
    return image


def vision_rows(output: ForwardOutput, layer: int, i: int) -> torch.Tensor:
    """``(H_g, W_g, d)`` sample ``i``'s vision-token hidden states at ``layer``, in grid order."""
    lay = output.vision[i]
    h = output.hidden[layer][i, lay.token_index.to(output.hidden[layer].device)]
    return h.detach().float().cpu().reshape(*lay.grid_hw, -1)


def cell_footprints(cell_xy: torch.Tensor) -> tuple[float, float]:
    """Half the spacing (dx/2, dy/2) between neighbouring cell centres."""
    xy = cell_xy.double()
    dx = (xy[:, 1:, 0] - xy[:, :-1, 0]).median().item() if xy.shape[1] > 1 else float("inf")
    dy = (xy[1:, :, 1] - xy[:-1, :, 1]).median().item() if xy.shape[0] > 1 else float("inf")
    return dx / 2, dy / 2


def overlap_fraction(centre: tuple[float, float], half: tuple[float, float], box: tuple[float, float, float, float]) -> float:
    """Area shared by the footprint ``centre +- half`` and ``box``, over the smaller of the two
    (1 = one contains the other, 0 = disjoint); an infinite half-width spans the box."""
    (x, y), (hx, hy) = centre, half
    x0, y0, x1, y1 = box
    fx0, fx1 = (x0, x1) if hx == float("inf") else (x - hx, x + hx)
    fy0, fy1 = (y0, y1) if hy == float("inf") else (y - hy, y + hy)
    shared = max(0.0, min(fx1, x1) - max(fx0, x0)) * max(0.0, min(fy1, y1) - max(fy0, y0))
    smaller = min((fx1 - fx0) * (fy1 - fy0), (x1 - x0) * (y1 - y0))
    return shared / smaller if smaller > 0 else 0.0


def assert_marker_found(change: torch.Tensor, cell_xy: torch.Tensor, box: tuple[int, int, int, int], what: str) -> None:
    """The cells a marker changed are the cells under it.

    ``change``: ``(h, w)`` how much each cell changed; ``cell_xy``: ``(h, w, 2)`` their centres.
    The most-changed cell's footprint must overlap the marker ``box`` (by a tenth of the smaller
    of the two areas, so a corner touch does not count), and the change-weighted
    centroid of the clearly changed cells (over a quarter of the maximum) must lie within half
    a cell of the box -- a grid read transposed or mirrored moves one or the other.
    """
    half = cell_footprints(cell_xy)
    u, v = divmod(int(change.argmax()), change.shape[1])
    centre = tuple(cell_xy[u, v].tolist())
    assert overlap_fraction(centre, half, box) >= 0.1, (
        f"{what} ({u}, {v}) changed most but its footprint (centre {centre}) is not over the marker {box}: "
        "token order, grid_hw and cell_xy disagree"
    )
    weights = change.double() * (change >= 0.25 * change.max())
    cx, cy = ((weights[..., None] * cell_xy.double()).sum((0, 1)) / weights.sum()).tolist()
    x0, y0, x1, y1 = box
    assert x0 - half[0] <= cx <= x1 + half[0] and y0 - half[1] <= cy <= y1 + half[1], (
        f"the {what}s the marker changed centre on ({cx:.1f}, {cy:.1f}), away from the marker {box}: "
        "token order, grid_hw and cell_xy disagree"
    )


def grid_change(change_by_token: torch.Tensor, grid) -> torch.Tensor:
    """``(seq,)`` per-position change -> ``(h, w)`` on ``grid``'s cells (cells on padding: 0)."""
    values = change_by_token[grid.token_index.to(change_by_token.device)].detach().float().cpu()
    return values.reshape(grid.grid_hw) * grid.in_image


def grid_covers(grid, box: tuple[int, int, int, int]) -> bool:
    """Does the footprint of ``grid``'s in-image cells (by ``cell_xy``) overlap ``box``?"""
    hx, hy = cell_footprints(grid.cell_xy)
    xy = grid.cell_xy.double()[grid.in_image]
    hx = 0.0 if hx == float("inf") else hx
    hy = 0.0 if hy == float("inf") else hy
    x0, y0, x1, y1 = box
    return bool(((xy[:, 0] - hx < x1) & (xy[:, 0] + hx > x0) & (xy[:, 1] - hy < y1) & (xy[:, 1] + hy > y0)).any())


class ReferenceUsed(UserWarning):
    """Which reference a contract check compared the adapter with (e.g. the processor could not
    be built here and the adapter's reference path was used instead)."""


#: A question for the chat and input checks (any prompt; the default template's wording).
CHECK_QUESTION = render_prompt(DEFAULT_PROMPT, "dog", "red ball")


@contextlib.contextmanager
def opted_in(adapter: VLMAdapter, option: str) -> Iterator[bool]:
    """While open, an adapter option that is off (creg.hf's opt-in levers, e.g.
    ``cached_text_prefix``, ``text_prefix_once``) is turned on, so that the contract checks the
    lever too; yields whether it did (False: the adapter has no such option, or it is on already)."""
    options = getattr(adapter, "options", None)
    if getattr(options, option, True) is not False:
        yield False
        return
    adapter.options = options.model_copy(update={option: True})
    try:
        yield True
    finally:
        adapter.options = options


def default_layers(num_layers: int) -> tuple[int, ...]:
    """The paper's layers {-2, -3, -4, -5}, limited to what a model with N layers has."""
    return tuple(l for l in (-2, -3, -4, -5) if num_layers + 1 + l >= 0)


class AdapterContract:
    """Combined contract tests for a :class:`~creg.plugins.adapter.VLMAdapter`.

    Subclass it in a ``Test*`` class and provide the ``adapter`` fixture; override the
    class attributes below to declare capabilities or adjust sizes and tolerances.
    """

    #: the adapter streams attention maps (``ForwardRequest.attentions``).
    supports_attentions: ClassVar[bool] = True
    #: the adapter returns vision-encoder activations (``ForwardRequest.vision_activations``).
    supports_vision_activations: ClassVar[bool] = True
    #: (width, height) of the generated test images: square, wide and tall.
    image_sizes: ClassVar[tuple[tuple[int, int], ...]] = ((112, 112), (168, 84), (84, 168))
    #: sizes the marker tests add to ``image_sizes``: one that processors resize or round (larger
    #: than a tiny checkpoint's maximum, no multiple of common patch sizes), one that tiles into
    #: 3 x 2 tiles of 112 px. Set to () only where ``image_sizes`` already holds such sizes.
    extra_marker_sizes: ClassVar[tuple[tuple[int, int], ...]] = ((450, 270), (336, 224))
    #: GradCAM's activations vs what the model's image-feature path reads.
    vision_atol: ClassVar[float] = 1e-5
    #: reference hidden states (``output_hidden_states``) vs the adapter's ``hidden``.
    hidden_atol: ClassVar[float] = 1e-4
    #: the depth check needs -2..-5 to be distinct decoder blocks (not the embeddings).
    min_layers_for_depth_check: ClassVar[int] = 5
    #: batched vs one-at-a-time, and eager vs default attention (float32).
    batch_atol: ClassVar[float] = 1e-4
    #: ``logits_from_layer(output, l, output.hidden[l])`` vs ``output.class_logits``.
    replay_atol: ClassVar[float] = 1e-5
    #: reference next-token logits vs class logits.
    reference_atol: ClassVar[float] = 1e-4

    @classmethod
    def marker_sizes(cls) -> tuple[tuple[int, int], ...]:
        """Every size the marker tests run on: ``image_sizes`` then ``extra_marker_sizes``."""
        return tuple(dict.fromkeys(tuple(map(tuple, cls.image_sizes)) + tuple(map(tuple, cls.extra_marker_sizes))))

    def pytest_generate_tests(self, metafunc):
        """The marker test runs on every size of :meth:`marker_sizes` (ids ``<size index>-<marker>``)."""
        if metafunc.function.__name__ == "test_marker_lands_in_its_cell":
            params = [(i, where) for i in range(len(metafunc.cls.marker_sizes())) for where in sorted(MARKERS)]
            metafunc.parametrize(("size_index", "where"), params, ids=[f"{i}-{w}" for i, w in params])

    # -- fixtures the subclass provides ----------------------------------------------------
    @pytest.fixture
    def adapter(self) -> VLMAdapter:
        """Provide a loaded adapter (override in your subclass, ideally ``scope="class"``)::

            @pytest.fixture(scope="class")
            @classmethod
            def adapter(cls):
                return MyAdapter.load(AdapterConfig(model=...))

        Use a small model on CPU (float32) so the contract runs in seconds.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must provide an `adapter` fixture returning a loaded VLMAdapter "
            "(see creg.testing.AdapterContract.adapter)"
        )

    @pytest.fixture
    def reference_class_logits(self, adapter) -> Callable[[list[Sample]], torch.Tensor]:
        """Provide ``f(samples) -> (b, 4)``: the model's own next-token logits of the option
        tokens after the generation prompt, computed *without* the adapter's forward (e.g. a plain
        ``model(**inputs).logits[:, -1, option_ids]``). The default uses the adapter's
        ``next_token_logits(samples) -> (b, vocab)`` and ``option_token_ids`` if it has them."""
        if hasattr(adapter, "next_token_logits") and hasattr(adapter, "option_token_ids"):
            ids = list(adapter.option_token_ids)
            return lambda samples: adapter.next_token_logits(samples)[:, ids]
        raise NotImplementedError(
            f"{type(self).__name__} must provide a `reference_class_logits` fixture, or the adapter "
            "must have next_token_logits(samples) and option_token_ids (see AdapterContract.reference_class_logits)"
        )

    @pytest.fixture(scope="class")
    @classmethod
    def image_dir(cls, tmp_path_factory):
        return tmp_path_factory.mktemp("contract_images")

    @pytest.fixture(scope="class")
    @classmethod
    def make_image_sample(cls, image_dir) -> Callable[..., Sample]:
        """``f(size, marker=None, noise_seed=None, sid=None) -> Sample``: the image is saved as a
        PNG file; the reference box is on the left, the target on the right."""

        def make(size, marker=None, noise_seed=None, sid=None, ref_name="dog", tgt_name="red ball") -> Sample:
            w, h = size
            sid = sid or f"{w}x{h}-{marker or 'plain'}-{noise_seed}-{len(ref_name)}-{len(tgt_name)}"
            path = image_dir / f"{sid}.png"
            draw_image(size, marker, noise_seed=noise_seed).save(path)
            return make_sample(
                id=sid,
                image=path,
                image_size=(w, h),
                ref_name=ref_name,
                ref_box={"x0": 0.05 * w, "y0": 0.4 * h, "x1": 0.25 * w, "y1": 0.6 * h},
                tgt_name=tgt_name,
                tgt_box={"x0": 0.7 * w, "y0": 0.4 * h, "x1": 0.9 * w, "y1": 0.6 * h},
                relation="right",
            )

        return make

    @pytest.fixture(scope="class")
    @classmethod
    def samples(cls, make_image_sample) -> list[Sample]:
        """One noise image per ``image_sizes`` entry."""
        return [make_image_sample(size, noise_seed=i) for i, size in enumerate(cls.image_sizes)]

    # -- shapes ----------------------------------------------------------------------------
    def test_image_sizes_include_non_square(self):
        assert any(w != h for w, h in self.image_sizes), "image_sizes must include a non-square image"

    def test_output_shapes_and_dtypes(self, adapter, samples):
        layers = default_layers(adapter.num_layers) + (0, -1)
        out = adapter.forward(samples, ForwardRequest(layers=layers))
        b = len(samples)
        assert out.class_logits.shape == (b, 4)
        assert out.class_logits.dtype == torch.float32
        assert torch.isfinite(out.class_logits).all()
        assert out.answer_index.shape == (b,) and out.answer_index.dtype == torch.long
        assert len(out.vision) == b
        assert set(out.hidden) == set(layers)
        seq = out.hidden[layers[0]].shape[1]
        for l in layers:
            assert out.hidden[l].dim() == 3 and out.hidden[l].shape[:2] == (b, seq), l
        for s, lay in zip(samples, out.vision):
            self._check_layout(lay, s, seq)
        assert (out.answer_index < seq).all()

    @staticmethod
    def _check_layout(lay: VisionLayout, sample: Sample, seq: int) -> None:
        gh, gw = lay.grid_hw
        assert gh > 0 and gw > 0
        assert lay.token_index.dtype == torch.long and lay.token_index.shape == (gh * gw,)
        assert lay.token_index.unique().numel() == gh * gw, "vision token positions must be distinct"
        assert 0 <= int(lay.token_index.min()) and int(lay.token_index.max()) < seq
        assert lay.cell_xy.shape == (gh, gw, 2) and lay.cell_xy.is_floating_point()
        if lay.non_spatial_index is not None and lay.non_spatial_index.numel():
            overlap = set(lay.non_spatial_index.tolist()) & set(lay.token_index.tolist())
            assert not overlap, f"positions {sorted(overlap)} are both grid cells and tokens without a pixel position"
        w, h = sample.image_size
        for g in lay.grids:
            xy = g.cell_xy.double()
            inside = g.in_image
            assert inside.any(), f"grid {g.name!r} has no cell on the image"
            on = xy[inside]
            assert (on[:, 0] >= 0).all() and (on[:, 0] <= w).all(), f"grid {g.name!r}: in-image cell x must lie on the image"
            assert (on[:, 1] >= 0).all() and (on[:, 1] <= h).all(), f"grid {g.name!r}: in-image cell y must lie on the image"
            off = xy[~inside]
            assert not (((off[:, 0] > 0) & (off[:, 0] < w) & (off[:, 1] > 0) & (off[:, 1] < h)).any()), (
                f"grid {g.name!r}: a cell declared on padding has its centre inside the image"
            )
            assert (xy[:, 1:, 0] > xy[:, :-1, 0]).all(), f"grid {g.name!r}: x must grow along a row (raster order)"
            assert (xy[1:, :, 1] > xy[:-1, :, 1]).all(), f"grid {g.name!r}: y must grow down the columns (top row first)"
        if len(lay.grids) > 1:
            union = torch.cat([g.token_index for g in lay.grids])
            assert torch.equal(union.cpu(), lay.token_index.cpu()), "a multi-grid layout's token_index is its grids' union"
        if lay.patch_hw is not None and not lay.is_multi_grid:
            assert lay.patch_hw[0] >= gh and lay.patch_hw[1] >= gw

    def test_no_graph_without_a_request(self, adapter, samples):
        """Parameters never require grad: a plain pass builds no autograd graph."""
        out = adapter.forward(samples[:1])
        assert not out.class_logits.requires_grad
        assert out.hidden == {}

    # -- where the vision tokens are -------------------------------------------------------
    def test_vision_tokens_are_the_image_positions(self, adapter, make_image_sample):
        """Changing only the pixels changes the input embeddings (index 0) at every in-image grid
        cell, and nowhere but at grid cells and declared tokens without a pixel position."""
        size = self.image_sizes[-1]
        a, b = make_image_sample(size, noise_seed=11), make_image_sample(size, noise_seed=12)
        out_a = adapter.forward([a], ForwardRequest(layers=(0,)))
        out_b = adapter.forward([b], ForwardRequest(layers=(0,)))
        diff = (out_a.hidden[0][0] - out_b.hidden[0][0]).detach().abs().amax(dim=-1).cpu()
        changed = set((diff > 0).nonzero()[:, 0].tolist())
        lay = out_a.vision[0]
        cells = set(lay.token_index[lay.in_image.reshape(-1)].tolist())
        allowed = set(lay.token_index.tolist())
        if lay.non_spatial_index is not None:
            allowed |= set(lay.non_spatial_index.tolist())
        assert cells <= changed, f"vision cells {sorted(cells - changed)[:8]} did not change with the pixels"
        assert changed <= allowed, f"positions {sorted(changed - allowed)[:8]} changed with the pixels but are no vision token"

    def test_marker_lands_in_its_cell(self, adapter, make_image_sample, where, size_index):
        """The cells whose embeddings (index 0) a small marker changes are the cells under it, by
        ``cell_xy`` -- in every grid whose cells cover the marker (tiles, thumbnail, base image);
        on every size of :meth:`marker_sizes`."""
        size = self.marker_sizes()[size_index]
        plain = make_image_sample(size)
        marked = make_image_sample(size, marker=where)
        out = adapter.forward([plain, marked], ForwardRequest(layers=(0,)))
        box = _marker_box(size, where)
        h0 = out.hidden[0]
        if out.vision[0].token_index.shape != out.vision[1].token_index.shape:
            raise AssertionError("two images of the same size got different vision layouts")
        per_token = torch.zeros(h0.shape[1], device=h0.device)
        i0, i1 = out.vision[0].token_index.to(h0.device), out.vision[1].token_index.to(h0.device)
        per_token[i1] = (h0[1, i1] - h0[0, i0]).detach().float().norm(dim=-1)
        assert per_token.max() > 0, f"the marker {box} changed no vision token: is it outside what the model sees?"
        checked = 0
        for g in out.vision[1].grids:
            if not grid_covers(g, box):
                continue
            change = grid_change(per_token, g)
            assert change.max() > 0, f"grid {g.name!r} covers the marker {box} by cell_xy, but none of its cells changed"
            assert_marker_found(change, g.cell_xy, box, f"cell of grid {g.name!r}")
            checked += 1
        assert checked, f"no grid's cells cover the marker {box}"

    def test_some_test_image_is_resized(self, adapter, make_image_sample):
        """At least one test image is resized or rounded by the processor: the grids' cells do not
        all have one pixel pitch in the original image. Otherwise a ``cell_xy`` laid over the
        resized canvas instead of the original image passes every marker test unseen."""
        sizes = self.marker_sizes()
        out = adapter.forward([make_image_sample(size, noise_seed=60 + i) for i, size in enumerate(sizes)])
        pitches: dict[tuple[float, float], list[str]] = {}
        for (w, h), lay in zip(sizes, out.vision):
            for g in lay.grids:
                hx, hy = cell_footprints(g.cell_xy)
                pitches.setdefault((round(2 * hx, 6), round(2 * hy, 6)), []).append(f"{w}x{h} {g.name}")
        assert len(pitches) > 1, (
            f"no test image is resized: every grid's cells are {next(iter(pitches))} px of the original image on "
            f"{sizes}; add to image_sizes / extra_marker_sizes a size the processor resizes or rounds (larger than its "
            "maximum, or no multiple of its patch size)")

    # -- the checkpoint's own template, processor and vision path --------------------------
    def test_chat_is_the_checkpoints_template(self, adapter):
        """``chat(q)`` and ``chat(q, a)`` are the checkpoint's own chat template applied to one
        image and the question (and the answer), character for character."""
        reference = getattr(adapter, "checkpoint_chat", None)
        if reference is None:
            pytest.skip("the adapter has no checkpoint_chat(question, answer) to compare with (0.2 contract)")
        for answer in (None, "1", "4"):
            try:
                expected = reference(CHECK_QUESTION, answer)
            except NotImplementedError as e:
                pytest.skip(str(e))
            got = adapter.chat(CHECK_QUESTION, answer)
            assert got == expected, (f"chat(q{', ' + repr(answer) if answer else ''}) is not the checkpoint's template:\n"
                                     f"  adapter:    {got!r}\n  checkpoint: {expected!r}")

    def test_inputs_are_the_checkpoints_processor(self, adapter, make_image_sample):
        """``encode_texts`` gives the ``input_ids`` the checkpoint's processor gives for the same
        texts and images (every marker size): image placeholder runs, breaks, markers, padding."""
        reference = getattr(adapter, "checkpoint_inputs", None)
        if reference is None or not hasattr(adapter, "encode_texts"):
            pytest.skip("the adapter has no checkpoint_inputs(texts, images) to compare with (0.2 contract)")
        images = [make_image_sample(size, noise_seed=70 + i).load_image() for i, size in enumerate(self.marker_sizes())]
        texts = [adapter.chat(CHECK_QUESTION)] * len(images)
        try:
            which, expected = reference(texts, images)
        except NotImplementedError as e:
            pytest.skip(str(e))
        warnings.warn(ReferenceUsed(f"{type(adapter).__name__}: input ids compared with {which}"))
        got = adapter.encode_texts(texts, images)
        for i in range(len(images)):
            a, b = got["input_ids"][i], expected["input_ids"][i]
            a, b = a[got["attention_mask"][i].bool()], b[expected["attention_mask"][i].bool()]
            if not torch.equal(a.cpu(), b.cpu()):
                tok = getattr(adapter, "tokenizer", None)
                show = (lambda ids: repr(tok.decode(ids))) if tok is not None else (lambda ids: str(ids.tolist()))
                raise AssertionError(f"image {images[i].size}: encode_texts is not {which}:\n  adapter:   {show(a)}\n"
                                     f"  reference: {show(b)}")

    def test_vision_activations_are_what_the_model_reads(self, adapter, samples):
        """GradCAM's activations are what the model's own image-feature path reads from the
        vision tower (e.g. ``hidden_states[vision_feature_layer]``), not a neighbouring layer."""
        if not self.supports_vision_activations:
            pytest.skip("the adapter declares no vision activations")
        reference = getattr(adapter, "reference_vision_activations", None)
        if reference is None:
            pytest.skip("the adapter has no reference_vision_activations(samples) to compare with (0.2 contract)")
        try:
            expected = reference(samples)
        except NotImplementedError as e:
            pytest.skip(str(e))
        got = adapter.forward(samples, ForwardRequest(vision_activations=True)).vision_activations
        assert len(got) == len(expected) == len(samples)
        for i, (a, b) in enumerate(zip(got, expected)):
            assert tuple(a.shape) == tuple(b.shape), f"sample {i}: activations {tuple(a.shape)}, the model reads {tuple(b.shape)}"
            torch.testing.assert_close(a.detach().float().cpu(), b.detach().float().cpu(), atol=self.vision_atol, rtol=1e-4,
                                       msg=lambda m: f"sample {i}: GradCAM's activations are not what the model's "
                                       f"image-feature path reads\n{m}")

    # -- logits ----------------------------------------------------------------------------
    def test_class_logits_are_the_models_next_token_logits(self, adapter, samples, reference_class_logits):
        out = adapter.forward(samples)
        for i, s in enumerate(samples):
            ref = reference_class_logits([s]).detach().float().cpu()[0]
            torch.testing.assert_close(out.class_logits[i].detach().cpu(), ref, atol=self.reference_atol, rtol=0)

    def test_deterministic(self, adapter, samples):
        layers = default_layers(adapter.num_layers)[:1]
        a = adapter.forward(samples, ForwardRequest(layers=layers))
        b = adapter.forward(samples, ForwardRequest(layers=layers))
        assert torch.equal(a.class_logits, b.class_logits)
        assert torch.equal(a.hidden[layers[0]], b.hidden[layers[0]])
        for la, lb in zip(a.vision, b.vision):
            assert torch.equal(la.token_index, lb.token_index) and torch.equal(la.cell_xy, lb.cell_xy)

    def test_batch_equals_one_at_a_time(self, adapter, samples):
        layer = default_layers(adapter.num_layers)[0]
        req = ForwardRequest(layers=(layer,))
        together = adapter.forward(samples, req)
        for i, s in enumerate(samples):
            alone = adapter.forward([s], req)
            torch.testing.assert_close(
                together.class_logits[i].detach(), alone.class_logits[0].detach(), atol=self.batch_atol, rtol=0
            )
            assert together.vision[i].grid_hw == alone.vision[0].grid_hw
            torch.testing.assert_close(together.vision[i].cell_xy, alone.vision[0].cell_xy)
            torch.testing.assert_close(
                vision_rows(together, layer, i), vision_rows(alone, layer, 0), atol=self.batch_atol, rtol=1e-4
            )

    def test_padding_changes_nothing(self, adapter, make_image_sample):
        """Names of different token lengths pad the shorter row: the batch must give each sample
        the class logits, vision-token states, answer state and gradients it gets alone."""
        layer = default_layers(adapter.num_layers)[0]
        size = self.image_sizes[1 % len(self.image_sizes)]
        short = make_image_sample(size, noise_seed=41, ref_name="dog", tgt_name="cat")
        long = make_image_sample(size, noise_seed=42, ref_name="small brown dog near the table",
                                 tgt_name="big red ball on the green grass")
        req = ForwardRequest(layers=(layer,))
        together = adapter.forward([short, long], req)
        g_together = torch.autograd.grad(together.class_logits[:, 1].sum(), together.hidden[layer])[0]
        alone = [adapter.forward([s], req) for s in (short, long)]
        lengths = [a.hidden[layer].shape[1] for a in alone]
        assert lengths[0] != lengths[1], "the contract's names should differ in token length (nothing was padded)"
        for i, one in enumerate(alone):
            what = f"sample {i} (sequence {lengths[i]} alone, {together.hidden[layer].shape[1]} padded)"
            torch.testing.assert_close(together.class_logits[i].detach(), one.class_logits[0].detach(),
                                       atol=self.batch_atol, rtol=0, msg=lambda m: f"{what}: class logits differ\n{m}")
            torch.testing.assert_close(vision_rows(together, layer, i), vision_rows(one, layer, 0), atol=self.batch_atol,
                                       rtol=1e-4, msg=lambda m: f"{what}: the states at token_index differ (does token_index "
                                       f"account for left padding?)\n{m}")
            at_b, at_1 = int(together.answer_index[i]), int(one.answer_index[0])
            torch.testing.assert_close(together.hidden[layer][i, at_b].detach(), one.hidden[layer][0, at_1].detach(),
                                       atol=self.batch_atol, rtol=1e-4, msg=lambda m: f"{what}: the answer position differs\n{m}")
            g_one = torch.autograd.grad(one.class_logits[:, 1].sum(), one.hidden[layer])[0]
            lay_b, lay_1 = together.vision[i], one.vision[0]
            grad_b = g_together[i, lay_b.token_index.to(g_together.device)].float().cpu()
            grad_1 = g_one[0, lay_1.token_index.to(g_one.device)].float().cpu()
            scale = grad_1.abs().max().clamp_min(1e-12)
            torch.testing.assert_close(grad_b / scale, grad_1 / scale, atol=1e-3, rtol=0,
                                       msg=lambda m: f"{what}: relevance (gradients at the vision tokens) differs\n{m}")

    def test_hidden_state_indices_are_the_models_own(self, adapter, samples):
        """Every hidden-state index, negative or not, is transformers' ``output_hidden_states``
        entry of that index (catches -2..-5 resolved like ``model.layers[l]``)."""
        reference = getattr(adapter, "reference_hidden_states", None)
        if reference is None:
            pytest.skip("the adapter has no reference_hidden_states(samples) to compare with (0.1 contract)")
        n = adapter.num_layers
        assert n >= self.min_layers_for_depth_check, (
            f"the depth check needs a model with >= {self.min_layers_for_depth_check} decoder layers so that "
            f"-2..-5 are distinct blocks; this one has {n}"
        )
        layers = tuple(range(-(n + 1), 0)) + tuple(range(0, n + 1))
        out = adapter.forward(samples, ForwardRequest(layers=layers))
        ref = reference(samples)
        assert len(ref) == n + 1, f"{len(ref)} reference hidden states for {n} layers"
        for l in layers:
            torch.testing.assert_close(out.hidden[l].detach().float(), ref[l].detach().float(), atol=self.hidden_atol,
                                       rtol=1e-4, msg=lambda m: f"hidden[{l}] is not output_hidden_states[{l}]\n{m}")

    def test_class_logits_are_what_the_model_answers_with(self, adapter, samples):
        """The class logits equal the model's own logits of each option read where the chat with
        that answer, tokenized from its text, predicts the option token (answer position, option
        tokens and any prefix-space piece all right)."""
        answer_logits = getattr(adapter, "answer_logits", None)
        if answer_logits is None:
            pytest.skip("the adapter has no answer_logits(samples) to compare with (0.1 contract)")
        out = adapter.forward(samples)
        torch.testing.assert_close(out.class_logits.detach().cpu(), answer_logits(samples).detach().float().cpu(),
                                   atol=self.reference_atol, rtol=0)

    def test_layer_beyond_the_model_is_refused(self, adapter, samples):
        n = adapter.num_layers
        for layer in (-(n + 2), n + 1):
            with pytest.raises(ValueError, match=str(layer)):
                adapter.forward(samples[:1], ForwardRequest(layers=(layer,)))

    def test_images_argument_replaces_the_pixels(self, adapter, make_image_sample):
        size = self.image_sizes[0]
        own, other = make_image_sample(size, noise_seed=21), make_image_sample(size, noise_seed=22)
        swapped = adapter.forward([own], images=[other.load_image()])
        direct = adapter.forward([other])
        torch.testing.assert_close(swapped.class_logits, direct.class_logits, atol=self.batch_atol, rtol=0)
        assert not torch.equal(adapter.forward([own]).class_logits, direct.class_logits)

    def test_occluded_class_logits_are_the_forward_of_the_occluded_images(self, adapter, make_image_sample):
        """Causal occlusion's passes (``occluded_class_logits``, which an adapter may make cheaper)
        give the class logits of an ordinary forward of the occluded images, at every image size."""


        for j, size in enumerate(self.image_sizes):
            s = make_image_sample(size, noise_seed=31 + j)
            base = np.asarray(s.load_image().convert("RGB"))
            fill = np.asarray(make_image_sample(size, noise_seed=41 + j).load_image().convert("RGB"))
            h, w = base.shape[:2]
            left = np.zeros((h, w), dtype=bool)
            left[:, : w // 2] = True
            images = [OccludedImage(base=base, fill=fill, mask=m) for m in (np.zeros((h, w), bool), left, ~left)]
            got = occluded_class_logits(adapter, [s] * 3, images)
            with torch.no_grad():
                expected = adapter.forward([s] * 3, images=[im.render() for im in images]).class_logits
            torch.testing.assert_close(got.float(), expected.float(), atol=self.batch_atol, rtol=0)
            with opted_in(adapter, "cached_text_prefix") as on:  # creg.hf's opt-in cached text prefix too
                if on:
                    cached = occluded_class_logits(adapter, [s] * 3, images)
                    torch.testing.assert_close(cached.float(), expected.float(), atol=self.batch_atol, rtol=0)

    # -- gradients -------------------------------------------------------------------------
    def test_gradients_reach_every_requested_layer_at_vision_tokens(self, adapter, samples):
        layers = default_layers(adapter.num_layers)
        out = adapter.forward(samples, ForwardRequest(layers=layers + (-1,)))
        tau = (out.class_logits[:, 0] - out.class_logits[:, 1]).sum()
        grads = torch.autograd.grad(tau, [out.hidden[l] for l in layers + (-1,)], allow_unused=True)
        for l, g in zip(layers, grads):
            assert g is not None, f"no gradient reaches layer {l}"
            for i, lay in enumerate(out.vision):
                assert g[i, lay.token_index].abs().sum() > 0, f"zero gradient at the vision tokens of layer {l}, sample {i}"
        g_last = grads[-1]
        for i, lay in enumerate(out.vision):
            # -1 is after the final (per-position) norm: only the answer position feeds the logits.
            assert g_last is None or g_last[i, lay.token_index].abs().sum() == 0

    def test_text_before_the_image_may_leave_the_graph_but_nothing_else_changes(self, adapter, make_image_sample):
        """``gradients_before_image=False`` (no source reads gradients before the first image
        token) may make the adapter compute that text outside the graph (``creg.hf.text_prefix``):
        the class logits, the hidden states and the gradients at the vision tokens stay those
        of the pass that keeps it."""
        layers = default_layers(adapter.num_layers)
        samples = [make_image_sample(self.image_sizes[0], noise_seed=51 + j) for j in range(2)]  # one size: no padding
        outs, grads = [], []
        for before in (True, False):
            # the pass without the text in the graph with creg.hf's opt-in lever on
            with contextlib.nullcontext() if before else opted_in(adapter, "text_prefix_once"):
                out = adapter.forward(samples, ForwardRequest(layers=layers, gradients_before_image=before))
            tau = (out.class_logits[:, 0] - out.class_logits[:, 1]).sum()
            outs.append(out)
            grads.append(torch.autograd.grad(tau, [out.hidden[l] for l in layers]))
        torch.testing.assert_close(outs[1].class_logits.detach(), outs[0].class_logits.detach(), atol=self.batch_atol, rtol=0)
        for l, g_keep, g_free in zip(layers, *grads):
            for i, lay in enumerate(outs[0].vision):
                torch.testing.assert_close(vision_rows(outs[1], l, i), vision_rows(outs[0], l, i), atol=self.batch_atol,
                                           rtol=1e-4, msg=lambda m: f"layer {l}, sample {i}: hidden states differ\n{m}")
                ref = g_keep[i, lay.token_index]
                torch.testing.assert_close(g_free[i, lay.token_index], ref, rtol=1e-3, atol=1e-4 * float(ref.abs().max()),
                                           msg=lambda m: f"layer {l}, sample {i}: gradients at the vision tokens differ\n{m}")

    def test_gradients_start_at_the_earliest_requested_layer(self, adapter, samples):
        layers = default_layers(adapter.num_layers)
        earliest = min(layers, key=adapter.layer_to_block)
        out = adapter.forward(samples[:1], ForwardRequest(layers=layers))
        h = out.hidden[earliest]
        assert h.requires_grad and h.grad_fn is None, (
            f"hidden[{earliest}] should be the leaf the graph starts from (nothing below it kept for backward)"
        )

    def test_logits_from_layer_reproduces_class_logits(self, adapter, samples):
        layers = default_layers(adapter.num_layers) + (-1,)
        out = adapter.forward(samples, ForwardRequest(layers=layers))
        for l in layers:
            h = out.hidden[l].detach()
            replay = adapter.logits_from_layer(out, l, h)
            torch.testing.assert_close(replay.detach(), out.class_logits.detach(), atol=self.replay_atol, rtol=0)
            stacked = adapter.logits_from_layer(out, l, torch.cat([h, h * 0.5]))
            assert stacked.shape == (2 * len(samples), 4)
            torch.testing.assert_close(stacked[: len(samples)].detach(), out.class_logits.detach(), atol=self.replay_atol, rtol=0)
            assert not torch.allclose(stacked[len(samples):], stacked[: len(samples)]), f"layer {l}: replay ignores its input"

    def test_logits_from_layer_is_differentiable(self, adapter, samples):
        layer = default_layers(adapter.num_layers)[0]
        out = adapter.forward(samples, ForwardRequest(layers=(layer,)))
        h = out.hidden[layer].detach().requires_grad_(True)
        (g,) = torch.autograd.grad(adapter.logits_from_layer(out, layer, h)[:, 0].sum(), [h])
        for i, lay in enumerate(out.vision):
            assert g[i, lay.token_index].abs().sum() > 0

    # -- optional capabilities -------------------------------------------------------------
    def test_vision_activations(self, adapter, make_image_sample):
        plain = make_image_sample(self.image_sizes[-1])
        marked = make_image_sample(self.image_sizes[-1], marker="top_right")
        request = ForwardRequest(vision_activations=True)
        if not self.supports_vision_activations or Capability.VISION_ACTIVATIONS not in adapter_provides(type(adapter)):
            with pytest.raises((NotImplementedError, ValueError)):
                adapter.forward([plain], request)
            return
        out = adapter.forward([plain, marked], request)
        assert out.vision_activations is not None and len(out.vision_activations) == 2
        for act, lay in zip(out.vision_activations, out.vision):
            assert act.dim() == 3
            if lay.patch_hw is not None:
                assert tuple(act.shape[:2]) == tuple(lay.patch_hw)
        grads = torch.autograd.grad(out.class_logits[:, 0].sum(), out.vision_activations)
        assert all(g.abs().sum() > 0 for g in grads)
        # Raster order: the patch that the marker changes most lies under the marker.
        change = (out.vision_activations[1] - out.vision_activations[0]).detach().float().norm(dim=-1).cpu()
        w, h = self.image_sizes[-1]
        patch_xy = out.vision[1].patch_centres()
        if patch_xy is None:  # no patch geometry and none implied: the activations span the image
            patch_xy = uniform_cell_xy(tuple(change.shape), (w, h))
        assert tuple(patch_xy.shape[:2]) == tuple(change.shape), f"patch_xy {tuple(patch_xy.shape)} vs activations {tuple(change.shape)}"
        assert_marker_found(change, patch_xy, _marker_box((w, h), "top_right"), "vision-activation patch")

    def test_attention_maps_are_streamed(self, adapter, samples):
        request = ForwardRequest(attentions=True)
        if not self.supports_attentions or Capability.ATTENTION_MAPS not in adapter_provides(type(adapter)):
            with pytest.raises((NotImplementedError, ValueError)):
                adapter.forward(samples, request, on_attention=lambda i, a: None)
            return
        seen: list[tuple[int, tuple[int, ...], torch.Tensor]] = []

        def on_attention(i: int, attn: torch.Tensor) -> None:
            seen.append((i, tuple(attn.shape), attn[:, :, -1].detach().float().sum(-1).cpu()))

        out = adapter.forward(samples, request, on_attention=on_attention)
        seq = None
        assert [i for i, _, _ in seen] == list(range(adapter.num_layers)), "one call per layer, in order"
        for i, shape, row_sums in seen:
            b, heads, q, k = shape
            assert b == len(samples) and heads > 0 and q == k
            seq = seq or q
            assert q == seq
            torch.testing.assert_close(row_sums, torch.ones_like(row_sums), atol=1e-3, rtol=0)
        assert max(int(lay.token_index.max()) for lay in out.vision) < seq
        plain = adapter.forward(samples)
        if getattr(adapter, "attentions_preserve_numerics", False):
            # declared: the gradient pass streams the maps, so they must not change a single bit
            assert torch.equal(out.class_logits, plain.class_logits), "attentions_preserve_numerics, but streaming changed the logits"
        torch.testing.assert_close(out.class_logits, plain.class_logits, atol=self.batch_atol, rtol=0)

    # -- clear errors ----------------------------------------------------------------------
    def test_missing_image_file(self, adapter, make_image_sample, image_dir):
        s = make_image_sample(self.image_sizes[0]).model_copy(update={"image": image_dir / "does-not-exist.png"})
        with pytest.raises(FileNotFoundError, match="does-not-exist"):
            adapter.forward([s])

    def test_unreadable_image_file(self, adapter, make_image_sample, image_dir):
        bad = image_dir / "not-an-image.png"
        bad.write_bytes(b"this is not a png")
        s = make_image_sample(self.image_sizes[0]).model_copy(update={"image": bad})
        with pytest.raises(ImageUnreadable, match="not-an-image"):
            adapter.forward([s])

    def test_box_outside_the_image_is_rejected(self, image_dir):
        with pytest.raises(InvalidSample, match="tgt_box"):
            make_sample(
                id="outside", image=image_dir / "x.png", image_size=(100, 80), ref_name="a",
                ref_box={"x0": 1, "y0": 1, "x1": 10, "y1": 10}, tgt_name="b",
                tgt_box={"x0": 90, "y0": 70, "x1": 130, "y1": 79}, relation="right",
            )

    def test_image_size_must_match_the_pixels(self, adapter, make_image_sample):
        """A sample whose ``image_size`` disagrees with its image (boxes would fall outside the
        pixels, cell centres would be wrong) is refused, naming the sample."""
        s = make_image_sample(self.image_sizes[0])
        w, h = s.image_size
        wrong = s.model_copy(update={"image_size": (w * 4, h * 4), "id": "size-mismatch"})
        with pytest.raises(ValueError, match="size-mismatch"):
            adapter.forward([wrong])
