"""One scoring pipeline (issue 11, item 4): ``creg run`` and ``creg explain`` score a sample
through the same function, so the same sample gives the same record in both."""

from __future__ import annotations

import math

import pytest
import torch

from creg.cli.explain import explain_sample
from creg.plugins.manager import get_plugins
from creg.config.resolve import build_benchmark, build_sources
from creg.execution.runner import Runner, RunConfig
from creg.explain.pipeline import ScoringSettings, sample_facts
from creg.store import RunStore

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def fake():
    from fake_vlm import FakeVLMAdapter

    return FakeVLMAdapter(patch_px=14, seed=3)


def test_run_and_explain_give_the_same_record_for_the_same_sample(tmp_path, fake):
    cfg = RunConfig(sources=["oracle", "creg", "random"], n=3, seed=2, bench_options={"width": 112, "height": 112})
    Runner(cfg, tmp_path / "r", adapter=fake, progress=False, log=lambda m: None).run()
    stored = {(r.sample_id, r.source): r for r in RunStore.read(tmp_path / "r").records()}
    samples = list(build_benchmark(cfg, get_plugins()).samples())
    for source in build_sources(cfg, get_plugins(), True):
        for s in samples:
            record, compass = explain_sample(s, source, fake, seed=cfg.seed)
            assert record.model_dump() == stored[(s.id, source.name)].model_dump()
            assert compass.peak_sector == record.peak_sector


def test_sample_facts_hold_the_geometry_and_the_answer():
    from creg.core.sample import Box, make_sample
    from PIL import Image

    s = make_sample(id="x", image=Image.new("RGB", (100, 100)), image_size=(100, 100), ref_name="a",
                    ref_box=Box(x0=0, y0=0, x1=20, y1=20), tgt_name="b", tgt_box=Box(x0=30, y0=40, x1=50, y1=60),
                    relation="below")
    f = sample_facts(s, ScoringSettings(rho_r=2.0, sigma_r=0.5), [0.0, 1.0, 2.0, 3.0])
    assert f.d_ab == pytest.approx(50.0) and f.r_max == pytest.approx(100.0) and f.sigma == pytest.approx(50.0)
    assert f.pred == "below" and f.correct is True
    assert f.true_angle == pytest.approx(math.degrees(math.atan2(-40, 30)) % 360)
    nan = sample_facts(s, ScoringSettings(), [float("nan"), 0.0, 0.0, 0.0])
    assert nan.pred is None and nan.correct is None and math.isnan(nan.logits[0])
