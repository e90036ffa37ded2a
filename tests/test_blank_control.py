"""The blank-image control (creg run --control blank): the chi-squared test against uniform, blank
samples, the nested run in RUN_DIR/blank, the summary's section, its warnings and a resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from creg.summary.chi2 import chi2_sf, chi2_uniform
from creg.summary.prior import blank_control, control_warnings
from creg.core.records import SampleRecord
from creg.execution.runner import RunConfig, Runner
from creg.core.sample import Box, make_sample

torch.set_num_threads(1)


def test_chi2_against_uniform_hand_computed():
    # K = 8 sectors, n = 16: E = 2 per sector; (10-2)^2/2 + 3 * (0-2)^2/2 + 3 * 0 + (0-2)^2/2 = 32 + 6 + 2 = 40
    t = chi2_uniform([10, 0, 0, 0, 2, 2, 2, 0])
    assert t["stat"] == pytest.approx(40.0) and t["df"] == 7 and t["n"] == 16
    assert t["p"] < 1e-5
    # chi2 with df = 2 is the exponential with mean 2: P(X >= x) = exp(-x / 2)
    assert chi2_sf(3.0, 2) == pytest.approx(math.exp(-1.5), rel=1e-12)
    # textbook critical values: chi2(1) 3.841 at 0.05, chi2(7) 18.475 at 0.01
    assert chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-9)
    assert chi2_sf(18.475306906582357, 7) == pytest.approx(0.01, rel=1e-9)
    even = chi2_uniform([3, 3, 3, 3])
    assert even["stat"] == 0.0 and even["p"] == 1.0
    assert chi2_uniform([0, 0, 0])["p"] is None


def _rec(sid, source, relation, dae, peak, compass=None):
    compass = compass or [1.0 if i == peak else 0.0 for i in range(8)]
    return SampleRecord(sample_id=sid, source=source, relation=relation, true_angle=0.0, compass=compass,
                        peak_sector=peak, peak_angle=45.0 * peak, sector_angle=45.0 * peak, dae=dae, dae_sector=dae,
                        ea=dae <= 45)


def test_blank_control_statistics_and_warnings():
    ids = [f"s{i}" for i in range(16)]
    scenes = [_rec(i, "m", "left", 10.0 + j % 3, peak=4) for j, i in enumerate(ids)]
    # on blanks every peak sits at 0 deg (right): far from uniform; DAE 180 for a "left" truth
    blanks = [_rec(i, "m", "left", 180.0, peak=0, compass=[0.9] + [0.1 / 7] * 7) for i in ids]
    c = blank_control(scenes, blanks)
    s = c["sources"]["m"]
    assert s["peak_counts"] == [16, 0, 0, 0, 0, 0, 0, 0]
    assert s["chi2"] == pytest.approx((16 - 2) ** 2 / 2 + 7 * 2) and s["df"] == 7 and s["prior"] is True
    assert s["top_share"] == 1.0 and s["dae"] == 180.0 and not s["image_blind"]
    assert s["by_class"]["left"]["explained_by_prior"] is False  # scenes 11 vs blanks 180
    kinds = [w["kind"] for w in control_warnings(c)]
    assert kinds == ["blank_prior"]
    # the same DAE on blanks as on scenes: the class is explained by the prior
    c2 = blank_control(scenes, [_rec(r.sample_id, "m", "left", r.dae, peak=(k % 8), compass=[0.2] * 8)
                                for k, r in enumerate(scenes)])
    assert c2["sources"]["m"]["prior"] is False and c2["sources"]["m"]["by_class"]["left"]["explained_by_prior"]
    assert [w["kind"] for w in control_warnings(c2)] == ["blank_dae"]


def test_default_blank_is_a_uniform_image_of_the_mean_colour():
    from PIL import Image

    from creg.core.blank import uniform_blank

    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((200, 100, 50), (0, 0, 20, 20))  # left half coloured: mean (100, 50, 25)
    s = make_sample(id="x", image=img, image_size=(40, 20), ref_name="a", ref_box=Box(x0=0, y0=0, x1=5, y1=5),
                    tgt_name="b", tgt_box=Box(x0=30, y0=0, x1=35, y1=5), relation="right")
    b = uniform_blank(s)
    arr = np.asarray(b.load_image())
    assert arr.shape == (20, 40, 3) and (arr == np.array([100, 50, 25], dtype=np.uint8)).all()
    assert (b.id, b.ref_box, b.tgt_box, b.relation) == (s.id, s.ref_box, s.tgt_box, s.relation)


def test_blank_control_run_on_synthetic_with_the_fake_model(tmp_path):
    from creg.plugins.manager import get_plugins
    from creg.testing.fake_vlm import FakeVLMAdapter

    cfg = RunConfig(sources=["gradnorm", "random"], n=8, controls=["blank"], bench_options={"width": 112, "height": 112})
    out = tmp_path / "run"
    runner = Runner(cfg, out, adapter=FakeVLMAdapter(patch_px=14, seed=2), progress=False, log=lambda _: None)
    # the synthetic benchmark's blank is the empty canvas: no object drawn, same boxes
    sample = next(runner.benchmark.samples())
    blank = runner.benchmark.blank_sample(sample)
    pixels = np.asarray(blank.load_image()).reshape(-1, 3)
    assert (pixels == pixels[0]).all() and not (np.asarray(sample.load_image()).reshape(-1, 3) == pixels[0]).all()
    assert (blank.ref_box, blank.tgt_box, blank.ref_name) == (sample.ref_box, sample.tgt_box, sample.ref_name)

    result = runner.run()
    main = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    blank_rows = [json.loads(x) for x in (out / "blank" / "records.jsonl").read_text().splitlines()]
    assert len(main) == 16 and len(blank_rows) == 16  # 8 samples x 2 sources each, never mixed
    assert {r["sample_id"] for r in main} == {r["sample_id"] for r in blank_rows}
    ctrl = json.loads((out / "summary.json").read_text())["controls"]["blank"]
    assert result.summary["controls"]["blank"] == ctrl and ctrl["n_samples"] == 8
    for name in ("gradnorm", "random"):
        s = ctrl["sources"][name]
        assert sum(s["peak_counts"]) == 8 and len(s["peak_counts"]) == 8 and 0 <= s["p"] <= 1
    assert ctrl["sources"]["random"]["image_blind"] and not ctrl["sources"]["gradnorm"]["image_blind"]
    assert result.summary["sources"]["gradnorm"]["n"] == 8  # the run's own metrics: scenes only
    assert "Blank-image control" in (out / "table.md").read_text()

    # a resume does nothing twice and keeps the control
    again = Runner(cfg, out, adapter=FakeVLMAdapter(patch_px=14, seed=2), progress=False, log=lambda _: None,
                   plugins=get_plugins()).run()
    assert again.processed == 0 and again.summary["controls"]["blank"] == ctrl
    assert len((out / "blank" / "records.jsonl").read_text().splitlines()) == 16


def test_empty_blank_maps_are_warned_about_not_read_as_uniform():
    ids = [f"s{i}" for i in range(8)]
    scenes = [_rec(i, "m", "left", 10.0, peak=4) for i in ids]
    blanks = [_rec(i, "m", "left", 90.0, peak=j % 8, compass=[1 / 8] * 8).model_copy(update={"flags": ["no_mass"]})
              for j, i in enumerate(ids)]
    c = blank_control(scenes, blanks)
    assert c["sources"]["m"]["flags"] == {"no_mass": 8} and c["sources"]["m"]["prior"] is False
    assert "blank_empty" in [w["kind"] for w in control_warnings(c)]
