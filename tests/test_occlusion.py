"""Causal occlusion (paper §4, Eq. 8): wedges, operators, Delta S / COS and the batched scoring."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from creg.explain.occlusion import (
    GREY,
    CosQuery,
    adjacent_sectors,
    apply_operator,
    causal_occlusion,
    causal_occlusion_score,
    cell_footprints,
    delta_s,
    gt_log_probs,
    occlude_sector,
    opposite_sector,
    patch_drop_mask,
    sector_masks,
    summarize_cos,
    true_sector,
    wedge_mask,
)
from creg.core.sample import Box, make_sample

torch.set_num_threads(1)


def _brute_wedge(size, center, r_max, sector, k):
    """Independent reference: loop over pixel centres with math.atan2 (Eq. 4) and half-open sectors."""
    w, h = size
    width = 360.0 / k
    out = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            dx, dy = x + 0.5 - center[0], y + 0.5 - center[1]
            theta = math.degrees(math.atan2(-dy, dx)) % 360.0
            s = int(((theta + width / 2) % 360.0) // width) % k
            out[y, x] = s == sector and math.hypot(dx, dy) <= r_max
    return out


def test_wedge_of_sector_0_hand_case():
    # 10x10 image, A's centre (5, 5), r_max 3, K = 4: sector 0 = "right", theta in [-45, 45).
    m = wedge_mask((10, 10), (5.0, 5.0), 3.0, 0, 4)
    assert m[5, 7]  # pixel centre (7.5, 5.5): dx 2.5, dy 0.5 -> theta -11 deg, rho 2.55
    assert not m[5, 8]  # (8.5, 5.5): rho 3.54 > r_max
    assert m[5, 5]  # (5.5, 5.5): theta = -45 deg exactly, the sector's closed edge
    assert not m[4, 5]  # (5.5, 4.5): theta = +45 deg, the open edge -> sector 1 (up)
    assert not m[5, 3]  # left of A
    # counted by hand: -dx < dy <= dx and rho <= 3, as (row, col): 1 pixel in col 5, 3 in col 6, 4 in col 7
    expected = {(5, 5), (4, 6), (5, 6), (6, 6), (3, 7), (4, 7), (5, 7), (6, 7)}
    assert {tuple(p) for p in np.argwhere(m)} == expected


@pytest.mark.parametrize("k", [4, 8])
def test_wedges_match_reference_and_partition_the_disc(k):
    size, center, r_max = (23, 17), (9.3, 7.1), 8.0
    masks = sector_masks(size, center, r_max, k)
    for s in range(k):
        np.testing.assert_array_equal(masks[s], _brute_wedge(size, center, r_max, s, k))
        np.testing.assert_array_equal(masks[s], wedge_mask(size, center, r_max, s, k))
    disc = _brute_wedge(size, center, r_max, 0, 1)  # (the centre is not a pixel centre here)
    np.testing.assert_array_equal(masks.sum(axis=0), disc.astype(int))  # no overlap, nothing missing


def test_opposite_and_adjacent_sectors():
    assert [opposite_sector(s, 8) for s in range(8)] == [4, 5, 6, 7, 0, 1, 2, 3]
    assert [opposite_sector(s, 4) for s in range(4)] == [2, 3, 0, 1]
    assert adjacent_sectors(0, 8) == (1, 7)
    assert true_sector(100.0, 8) == 2 and true_sector(340.0, 8) == 0 and true_sector(22.5, 8) == 1
    # the opposite wedge lies on the other side of A: sector 0 (right) vs sector 4 (left)
    right = wedge_mask((20, 20), (10.0, 10.0), 6.0, 0, 8)
    left = wedge_mask((20, 20), (10.0, 10.0), 6.0, opposite_sector(0, 8), 8)
    cols = np.arange(20)[None, :].repeat(20, 0)
    assert (cols[right] >= 10).all() and (cols[left] < 10).all()
    assert not (right & left).any()


def test_grey_fill_changes_exactly_the_mask():
    img = Image.new("RGB", (12, 8), (250, 10, 30))
    mask = np.zeros((8, 12), dtype=bool)
    mask[2:5, 3:9] = True
    out = np.asarray(apply_operator(img, mask, "grey"))
    assert (out[mask] == GREY).all() and GREY == (128, 128, 128)
    assert (out[~mask] == (250, 10, 30)).all()
    assert np.asarray(img)[0, 0].tolist() == [250, 10, 30]  # the input is not modified


def test_blur_smooths_inside_the_mask_only():
    arr = np.zeros((40, 40, 3), dtype=np.uint8)
    arr[:, ::2] = 255  # stripes: blur turns them grey-ish
    img = Image.fromarray(arr)
    mask = np.zeros((40, 40), dtype=bool)
    mask[10:30, 10:30] = True
    out = np.asarray(apply_operator(img, mask, "blur")).astype(int)
    assert (out[~mask] == arr[~mask]).all()
    assert out[mask].std() < 0.2 * arr[mask].astype(int).std()


def test_patch_drop_masks_whole_cells_whose_centre_is_in_the_wedge():
    # 9x9 image, 3x3 grid (cells of 3 px, centres 1.5 / 4.5 / 7.5), A at the centre (4.5, 4.5).
    xs = torch.tensor([1.5, 4.5, 7.5], dtype=torch.float64)
    yy, xx = torch.meshgrid(xs, xs, indexing="ij")
    cell_xy = torch.stack([xx, yy], dim=-1)
    rows, cols = cell_footprints(cell_xy, (9, 9))
    assert rows.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and cols.tolist() == rows.tolist()
    # K = 4, sector 0 = [-45, 45): cell (1, 2) at theta 0 and cell (2, 2) at theta -45 (closed edge);
    # cell (0, 2) at +45 belongs to sector 1; the centre cell (1, 1) sits on A (rho 0, no direction).
    m = patch_drop_mask(cell_xy, (9, 9), (4.5, 4.5), 10.0, 0, 4)
    expected = np.zeros((9, 9), dtype=bool)
    expected[3:9, 6:9] = True
    np.testing.assert_array_equal(m, expected)
    # r_max smaller than the distance to the cell centres (3 and 4.24 px): nothing is dropped
    assert not patch_drop_mask(cell_xy, (9, 9), (4.5, 4.5), 2.9, 0, 4).any()


def test_delta_s_and_cos_paper_example():
    # Eq. 8 and its worked example (§4): Delta S_true = -0.47, Delta S_opp = -0.06 -> COS = +0.41.
    assert causal_occlusion_score(-0.47, -0.06) == pytest.approx(0.41)
    # Delta S_k = log p_k(gt) - log p_0(gt)
    assert delta_s(math.log(0.5), math.log(0.8)) == pytest.approx(math.log(0.5 / 0.8))
    np.testing.assert_allclose(causal_occlusion_score([-0.47, -0.1], [-0.06, -0.3]), [0.41, -0.2])


def test_gt_log_probs_is_log_softmax_over_four_classes():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    lp = gt_log_probs(logits, [0, 3])
    assert lp[0] == pytest.approx(2.0 - math.log(math.e**2 + 3))
    assert lp[1] == pytest.approx(math.log(0.25))


def _scene(i: int, ref=(40, 40, 80, 80), tgt=(140, 40, 180, 80), relation="right", size=(224, 224)):
    img = Image.new("RGB", size, (235, 235, 235))
    img.paste((220, 40, 40), ref)
    img.paste((40, 80, 220), tgt)
    return make_sample(id=f"s{i}", image=img, image_size=size, ref_name="red square", ref_box=Box(x0=ref[0], y0=ref[1], x1=ref[2], y1=ref[3]),
                       tgt_name="blue square", tgt_box=Box(x0=tgt[0], y0=tgt[1], x1=tgt[2], y1=tgt[3]), relation=relation)


@pytest.fixture(scope="module")
def fake():
    from creg.testing.fake_vlm import FakeVLMAdapter

    return FakeVLMAdapter(patch_px=14, seed=3)


@pytest.mark.parametrize("op", ["grey", "blur", "patch_drop"])
def test_causal_occlusion_one_forward_and_matches_separate_forwards(fake, op):
    samples = [_scene(0), _scene(1, ref=(150, 150, 190, 190), tgt=(60, 150, 100, 190), relation="left")]
    cell_xy = [fake.forward([s]).vision[0].cell_xy for s in samples]
    queries = [CosQuery(0, 0, samples[0].ref_box.center, 2.0 * 100.0), CosQuery(1, 3, samples[1].ref_box.center, 2.0 * 90.0)]
    calls = fake.forward_calls
    out = causal_occlusion(fake, samples, queries, k=8, rho_r=2.0, op=op, cell_xy=cell_xy)
    assert fake.forward_calls == calls + len(samples)  # one call per sample: its p_0 and all its occlusions
    chunked = causal_occlusion(fake, samples, queries, k=8, rho_r=2.0, op=op, cell_xy=cell_xy, chunk_size=3)
    assert fake.forward_calls > calls + 2 * len(samples)  # smaller chunks, more calls, the same numbers
    for a, b in zip(out, chunked):
        assert a["peak"]["delta"] == pytest.approx(b["peak"]["delta"], abs=1e-5)
        assert a["area_matched"]["cos"] == pytest.approx(b["area_matched"]["cos"], abs=1e-5)

    for q, entry, s, xy in zip(queries, out, samples, cell_xy):
        assert entry["op"] == op
        assert entry["peak"]["sector"] == q.peak_sector and entry["peak"]["opp_sector"] == (q.peak_sector + 4) % 8
        assert entry["true"]["sector"] == true_sector(s.angle, 8)
        base = gt_log_probs(fake.forward([s]).class_logits, [s.option])[0]
        assert entry["log_p0"] == pytest.approx(base, abs=1e-5)
        occluded = occlude_sector(s.load_image(), q.center, q.r_max, q.peak_sector, 8, op, xy)
        ref = gt_log_probs(fake.forward([s], images=[occluded]).class_logits, [s.option])[0] - base
        assert entry["peak"]["delta"] == pytest.approx(ref, abs=1e-5)
        assert entry["peak"]["cos"] == pytest.approx(entry["peak"]["delta_opp"] - entry["peak"]["delta"])
        assert entry["adjacent"]["cos"] == pytest.approx(np.mean(entry["adjacent"]["delta"]) - entry["peak"]["delta"])
        assert entry["peak"]["area"] > 0
    json.dumps(out)  # records must stay JSON


def test_empty_wedge_and_zero_distance(fake):
    s = _scene(0, ref=(0, 90, 30, 130), tgt=(150, 90, 190, 130))
    # a projection centre on the left border: its "left" wedge (sector 4) covers no pixel
    out = causal_occlusion(fake, [s], [CosQuery(0, 4, (0.0, 110.0), 250.0)], k=8, rho_r=2.0)[0]
    assert out["peak"]["area"] == 0.0 and out["peak"]["delta"] == 0.0
    assert out["peak"]["area_opp"] > 0
    same = _scene(1, ref=(40, 40, 80, 80), tgt=(40, 40, 80, 80))
    assert causal_occlusion(fake, [same], [CosQuery(0, 0, (60.0, 60.0), 0.0)], k=8, rho_r=2.0) == [None]


def test_summarize_cos_means():
    rows = [
        {"op": "grey", "peak": {"delta": -0.5, "delta_opp": -0.1, "cos": 0.4}, "true": {"delta": -0.4, "delta_opp": 0.0, "cos": 0.4},
         "adjacent": {"delta_mean": -0.2, "cos": 0.3}},
        {"op": "grey", "peak": {"delta": -0.3, "delta_opp": -0.1, "cos": 0.2}, "true": {"delta": -0.2, "delta_opp": 0.0, "cos": 0.2},
         "adjacent": {"delta_mean": 0.0, "cos": 0.3}},
        None,
    ]
    s = summarize_cos(rows)
    assert s["n"] == 2 and s["peak"]["cos"]["mean"] == pytest.approx(0.3)
    assert s["adjacent"]["delta"]["mean"] == pytest.approx(-0.1)
    assert summarize_cos([None]) is None


def test_run_with_cos_fills_records_summary_and_table(fake, tmp_path):
    from creg.execution.runner import Runner, RunConfig

    cfg = RunConfig(sources=["oracle", "random"], n=4, cos=True, cos_op="grey", batch_size=2,
                    bench_options={"width": 112, "height": 112})
    res = Runner(cfg, tmp_path / "run", adapter=fake, progress=False, log=lambda m: None).run()
    from creg.store import RunStore

    store = RunStore.read(tmp_path / "run")
    recs = store.records()
    assert len(recs) == 8 and all(r.cos is not None for r in recs)
    # stored once per sample (samples.jsonl), not in every source's row
    assert all(f.cos_true is not None for f in store.samples().values())
    assert all("true" not in row.cos for row in store.rows())
    # the true-direction reading does not depend on the source
    by_id = {}
    for r in recs:
        by_id.setdefault(r.sample_id, []).append(r.cos["true"]["cos"])
    assert all(len(set(v)) == 1 for v in by_id.values())
    # the oracle's peak sector holds theta_true, so its peak reading is the true reading
    for r in recs:
        if r.source == "oracle":
            assert r.cos["peak"]["sector"] == r.cos["true"]["sector"]
            assert r.cos["peak"]["cos"] == pytest.approx(r.cos["true"]["cos"])
    assert res.summary["sources"]["oracle"]["cos"]["n"] == 4
    assert "COS↑ peak" in res.table and "COS at the true direction" in res.table
    # the area-matched reading is a registered metric: a summary value (the records' mean), a table column
    oracle = [r.cos["area_matched"]["cos"] for r in recs if r.source == "oracle"]
    assert res.summary["sources"]["oracle"]["cos_area_matched"] == pytest.approx(np.mean(oracle))
    assert "COS↑ area-matched" in res.table


# -- area-matched control (issue 12) ------------------------------------------------------------
from types import SimpleNamespace

from creg.core.compass import polar_coordinates, project_to_compass, sector_of
from creg.explain.context import ExplainContext
from creg.explain.occlusion import area_matched_mask, control_rng, pixel_polar
from creg.sources.geometry import OracleSource, RandomRelevanceSource
from creg_synthetic.benchmark import SyntheticBenchmark


def test_area_matched_mask_is_as_large_as_the_wedge_in_another_sector_nearest_first():
    size, center = (224, 224), (30.0, 100.0)
    peak = wedge_mask(size, center, 180.0, 0, 8)  # towards the open side: a large wedge
    mask, sector = area_matched_mask("grey", size, center, peak, 0, 8, np.random.default_rng(0))
    assert sector != 0 and mask.sum() == peak.sum()
    theta, rho = pixel_polar(size, center)
    in_sector = (sector_of(theta, 8).numpy() == sector) & (rho.numpy() > 0)
    assert not (mask & ~in_sector).any()
    # nearest first: every chosen pixel is at most as far as every unchosen pixel of that sector
    assert rho.numpy()[mask].max() <= rho.numpy()[in_sector & ~mask].min()
    # the generator decides the sector; the sector only draws from those large enough
    drawn = {area_matched_mask("grey", size, center, peak, 0, 8, np.random.default_rng(s))[1] for s in range(40)}
    capacity = {s: int(((sector_of(theta, 8).numpy() == s) & (rho.numpy() > 0)).sum()) for s in range(1, 8)}
    assert drawn == {s for s, c in capacity.items() if c >= peak.sum()}
    assert control_rng("x", 3).random() == control_rng("x", 3).random() != control_rng("x", 4).random()


def test_area_matched_mask_for_patch_drop_hides_as_many_whole_cells():
    size, center = (224, 224), (60.0, 110.0)
    xs = (np.arange(8) + 0.5) * 28.0
    cell_xy = torch.tensor(np.stack(np.meshgrid(xs, xs), axis=-1))
    peak = patch_drop_mask(cell_xy, size, center, 120.0, 0, 8)
    mask, sector = area_matched_mask("patch_drop", size, center, peak, 0, 8, np.random.default_rng(1), cell_xy)
    assert sector != 0
    cells = lambda m: int(m[14::28, 14::28].sum())  # one pixel per 28-px cell
    assert cells(mask) == cells(peak) > 0
    assert mask.sum() == cells(mask) * 28 * 28  # whole cells only
    theta, _ = polar_coordinates(cell_xy, center)
    assert (sector_of(theta, 8).numpy()[mask[14::28, 14::28]] == sector).all()


class _PixelCountingVLM:
    """A stand-in model whose log p(gt) falls with the grey pixels it sees: ``where="anywhere"``
    counts them over the whole image (a model that only feels *how much* is hidden), ``"b"`` only
    inside B's box (a model that looks at B)."""

    def __init__(self, where: str):
        self.where = where

    def forward(self, samples, request=None, images=None):
        rows = []
        for s, img in zip(samples, images):
            px = np.asarray(img)
            if self.where == "b":
                b = s.tgt_box
                px = px[int(b.y0):int(b.y1), int(b.x0):int(b.x1)]
            grey = px.view(np.uint8).reshape(-1, 3) @ np.array([1, 256, 65536]) == sum(g << (8 * j) for j, g in enumerate(GREY))
            logits = np.zeros(4)
            logits[s.option] = 4.0 - 8.0 * grey.mean()
            rows.append(logits)
        return SimpleNamespace(class_logits=torch.tensor(np.array(rows)))


def _cos_entries(model, samples, source, k=8, rho_r=2.0):
    ctx = ExplainContext(samples, None, seed=0)
    queries = []
    for i, (s, m) in enumerate(zip(samples, source.explain(ctx))):
        c = project_to_compass(m.values, s.ref_box, s.tgt_box, s.image_size, cell_xy=m.cell_xy, k=k, rho_r=rho_r,
                               rng=ctx.rng(i, "tie"))
        queries.append(CosQuery(i, int(c.peak_sector), s.ref_box.center, c.r_max))
    return causal_occlusion(model, samples, queries, k=k, rho_r=rho_r)


def _mean_se(x):
    x = np.asarray(x, dtype=np.float64)
    return x.mean(), x.std(ddof=1) / math.sqrt(x.size)


def test_area_matched_cos_removes_the_area_confound_of_clipped_wedges():
    """On creg 0.1's layout A's disc is clipped by the border, and noise peaks fall on the large
    wedges: a model that only feels how many pixels are hidden gives noise a clearly positive
    paper COS, and exactly 0 against the area-matched control (same pixel count)."""
    samples = list(SyntheticBenchmark(seed=0, n=60, layout="legacy").samples())
    out = _cos_entries(_PixelCountingVLM("anywhere"), samples, RandomRelevanceSource())
    paper, se = _mean_se([e["peak"]["cos"] for e in out])
    assert paper > 5 * se > 0
    assert np.mean([e["peak"]["area"] for e in out]) > 2 * np.mean([e["peak"]["area_opp"] for e in out])
    for e in out:
        m = e["area_matched"]
        assert m["area"] == pytest.approx(m["area_peak"]) and m["sector"] != e["peak"]["sector"]
        assert m["cos"] == pytest.approx(0.0, abs=1e-9)
        assert len(e["adjacent"]["areas"]) == 2
    s = summarize_cos(out)
    assert s["area_matched"]["cos"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert s["peak"]["area"]["mean"] > s["peak"]["area_opp"]["mean"]


@pytest.mark.slow
def test_uniform_noise_gets_no_positive_area_matched_cos_on_average():
    """A model that answers from B's pixels: hiding the wedge towards B hurts, so the oracle (peak
    always towards B) scores a positive area-matched COS, while uniform-noise relevance (peak
    unrelated to B) does not: its mean stays within 2 standard errors of 0 or below."""
    samples = list(SyntheticBenchmark(seed=1, n=96).samples())
    model = _PixelCountingVLM("b")
    noise, se = _mean_se([e["area_matched"]["cos"] for e in _cos_entries(model, samples, RandomRelevanceSource())])
    assert noise < 2 * se, (noise, se)
    oracle, se_o = _mean_se([e["area_matched"]["cos"] for e in _cos_entries(model, samples, OracleSource())])
    assert oracle > 5 * se_o > 0


# -- the cheaper occluded passes give the numbers of the one-forward path (issue 13) ----------------

def _one_forward_reference(adapter, samples, queries, *, k, rho_r, op, cell_xy):
    """The pre-issue-13 path, rebuilt from the public pieces: every distinct occlusion of the batch
    rendered as a PIL image (operator applied per image) and ONE forward of all of them with the
    unoccluded images; {(sample, reading): (delta, area)} and each query's area-matched control."""
    from creg.explain.occlusion import occlusion_mask

    images = [s.load_image() for s in samples]
    keys, masks = [], {}
    for q in queries:
        s = samples[q.index]
        xa, ya = s.ref_box.center
        r_true = rho_r * math.hypot(s.tgt_box.center[0] - xa, s.tgt_box.center[1] - ya)
        t = true_sector(s.angle, k)
        for center, r_max, sector in [(q.center, q.r_max, q.peak_sector), (q.center, q.r_max, opposite_sector(q.peak_sector, k)),
                                      ((xa, ya), r_true, t), ((xa, ya), r_true, opposite_sector(t, k)),
                                      *[(q.center, q.r_max, a) for a in adjacent_sectors(q.peak_sector, k)]]:
            key = (q.index, center, r_max, sector)
            masks[key] = occlusion_mask(op, images[q.index].size, center, r_max, sector, k, cell_xy[q.index])
        like = masks[(q.index, q.center, q.r_max, q.peak_sector)]
        masks[("ctrl", q.index, q.peak_sector)] = area_matched_mask(op, images[q.index].size, q.center, like, q.peak_sector, k,
                                                                    control_rng(samples[q.index].id, q.peak_sector),
                                                                    cell_xy[q.index])[0]
    keys = [key for key, m in masks.items() if m.any()]
    owner = lambda key: key[1] if key[0] == "ctrl" else key[0]  # noqa: E731
    rendered = images + [apply_operator(images[owner(key)], masks[key], op) for key in keys]
    batch = list(samples) + [samples[owner(key)] for key in keys]
    with torch.no_grad():
        logp = gt_log_probs(adapter.forward(batch, images=rendered).class_logits, [s.option for s in batch])
    delta = {key: logp[len(samples) + j] - logp[owner(key)] for j, key in enumerate(keys)}
    return lambda key: delta.get(key, 0.0), logp[: len(samples)]


@pytest.mark.parametrize("op", ["grey", "blur", "patch_drop"])
@pytest.mark.slow
def test_cos_is_unchanged_on_the_toy_model(op):
    """The shipped toy model, a batch of 3 synthetic scenes and 3 sources' peaks: every Delta S and
    COS of the chunked per-sample passes equals the one-forward path to float tolerance."""
    from creg.config.presets import load_registry
    from creg.plugins.manager import get_plugins

    toy = load_registry([])["qwen2vl-toy"]
    adapter = get_plugins().load("adapter", "qwen2vl").load(toy.adapter_config(dtype="float32", device="cpu"))
    samples = list(SyntheticBenchmark(seed=0, n=3).samples())
    cell_xy = [layout.cell_xy for layout in adapter.forward(samples).vision]
    queries = [CosQuery(i, peak, s.ref_box.center, 2.0 * math.dist(s.ref_box.center, s.tgt_box.center))
               for i, s in enumerate(samples) for peak in (true_sector(s.angle, 8), (3 * i + 1) % 8, 6)]
    out = causal_occlusion(adapter, samples, queries, k=8, rho_r=2.0, op=op, cell_xy=cell_xy)
    delta, logp0 = _one_forward_reference(adapter, samples, queries, k=8, rho_r=2.0, op=op, cell_xy=cell_xy)
    moved = []
    for q, e in zip(queries, out):
        key = lambda sector, center=q.center, r=q.r_max: (q.index, center, r, sector)  # noqa: E731
        assert e["log_p0"] == pytest.approx(logp0[q.index], abs=1e-5)
        assert e["peak"]["delta"] == pytest.approx(delta(key(q.peak_sector)), abs=1e-5)
        assert e["peak"]["delta_opp"] == pytest.approx(delta(key(e["peak"]["opp_sector"])), abs=1e-5)
        assert e["adjacent"]["delta"] == pytest.approx([delta(key(a)) for a in e["adjacent"]["sectors"]], abs=1e-5)
        assert e["area_matched"]["delta"] == pytest.approx(delta(("ctrl", q.index, q.peak_sector)), abs=1e-5)
        assert e["peak"]["cos"] == pytest.approx(e["peak"]["delta_opp"] - e["peak"]["delta"], abs=1e-12)
        moved += [abs(e["peak"]["delta"]), abs(e["peak"]["delta_opp"]), abs(e["area_matched"]["delta"])]
    assert max(moved) > 1e-3  # the occlusions do change the toy's answer: the comparison has teeth
