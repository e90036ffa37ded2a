"""``creg report`` and ``creg explain``: files written, figures are real PNGs, text is right."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from creg.cli import cli
from creg.report.examples import run_samples
from creg.report.report import ReportError, build_report
from creg.execution.runner import Runner, RunConfig

torch.set_num_threads(1)
pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def fake():
    from creg.testing.fake_vlm import FakeVLMAdapter

    return FakeVLMAdapter(patch_px=14, seed=5)


def _is_png(path) -> bool:
    data = path.read_bytes()
    if not data.startswith(PNG) or len(data) < 2000:
        return False
    img = np.asarray(Image.open(path).convert("L"))
    return img.std() > 5  # not a blank canvas


@pytest.mark.slow
def test_report_of_a_run_without_model(tmp_path):
    run = tmp_path / "run"
    Runner(RunConfig(sources=["oracle", "random"], n=8), run, progress=False, log=_quiet).run()
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert result.exit_code == 0, result.output
    md = (run / "report.md").read_text()
    for section in ("Directional attribution", "Per class", "Pairwise differences"):
        assert section in md
    assert "Causal occlusion" not in md and "Correct vs incorrect" not in md  # not supported by this run
    rep = json.loads((run / "report.json").read_text())
    assert rep["summary"]["sources"]["oracle"]["dae"] == 0.0 and rep["summary"]["complete"] is True
    figs = sorted(p.name for p in (run / "figures").iterdir())
    assert figs == ["examples_oracle.png", "examples_random.png", "per_class.png"]
    assert all(_is_png(run / "figures" / f) for f in figs)


def test_synthetic_images_are_recreated_from_the_config(tmp_path):
    from creg.plugins.manager import get_plugins
    from creg.config.resolve import build_benchmark

    run = tmp_path / "run"
    cfg = RunConfig(sources=["oracle"], n=5, seed=3)
    Runner(cfg, run, progress=False, log=_quiet).run()
    config = json.loads((run / "config.json").read_text())
    (sample,) = run_samples(config, {}, {"synthetic-3-00004"}).values()
    want = list(build_benchmark(cfg, get_plugins()).samples())[4].load_image()
    assert np.array_equal(np.asarray(sample.load_image()), np.asarray(want))


@pytest.mark.slow
def test_report_with_model_cos_and_flip(tmp_path, fake):
    from creg.experiments import variants

    run = tmp_path / "run"
    Runner(RunConfig(sources=["oracle", "random"], n=4, cos=True, batch_size=4, bench_options={"width": 112, "height": 112}), run, adapter=fake,
           progress=False, log=_quiet).run()
    # the flip pass, with the same fake model (run_flipped would load the configured adapter)
    from creg.execution.runner import Runner as R

    runner = R(RunConfig(**json.loads((run / "config.json").read_text())["run"]).model_copy(update={"cos": False}),
               run / "flip", adapter=fake, progress=False, log=_quiet)
    runner.benchmark = variants.FlippedBenchmark(runner.benchmark)
    runner.run()
    rep = build_report(run, log=_quiet)
    md = (run / "report.md").read_text()
    assert "Causal occlusion" in md and "True-direction reading" in md and "Flip equivariance" in md
    assert rep["flip"]["oracle"]["r_mean"] == pytest.approx(1.0)
    assert rep["per_class"]["accuracy"] is not None
    assert _is_png(run / rep["figures"]["cos"]) and _is_png(run / rep["figures"]["per_class"])


def test_report_refuses_a_non_run(tmp_path):
    with pytest.raises(ReportError):
        build_report(tmp_path)
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output


def test_explain_command_without_model(tmp_path):
    img = Image.new("RGB", (200, 120), (230, 230, 230))
    img.save(tmp_path / "scene.png")
    out = tmp_path / "fig.png"
    result = CliRunner().invoke(cli, [
        "explain", "--adapter", "none", "--image", str(tmp_path / "scene.png"), "--source", "oracle",
        "--ref", "cup", "--ref-box", "10,40,50,80", "--tgt", "plate", "--tgt-box", "140,40,180,80", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    bars = [l.split() for l in lines if l.strip()[:2].strip() in {"E", "NE", "N", "NW", "W", "SW", "S", "SE"}]
    assert [b[0] for b in bars] == ["E", "NE", "N", "NW", "W", "SW", "S", "SE"]
    assert float(bars[0][1]) == 1.0  # the oracle puts everything on B, straight right of A
    assert "peak: E (sector 0)" in result.output and "DAE 0.0°" in result.output and "no model" in result.output
    assert _is_png(out)


def test_explain_with_a_model_prints_the_answer(fake, tmp_path):
    from creg.cli.explain import explain_sample, format_explanation
    from creg.core.sample import Box, make_sample
    from creg.sources.contrastive_multilayer import CregSource

    img = Image.new("RGB", (224, 224), (235, 235, 235))
    img.paste((200, 30, 30), (30, 90, 70, 130))
    img.paste((30, 30, 200), (150, 90, 190, 130))
    s = make_sample(id="x", image=img, image_size=(224, 224), ref_name="red square", ref_box=Box(x0=30, y0=90, x1=70, y1=130),
                    tgt_name="blue square", tgt_box=Box(x0=150, y0=90, x1=190, y1=130), relation="right")
    record, compass = explain_sample(s, CregSource(layers=[-2, -3]), fake)
    assert record.logits is not None and record.pred in ("left", "right", "above", "below")
    assert compass.probs.sum().item() == pytest.approx(1.0)
    text = format_explanation(s, record, "creg")
    model_line = next(line for line in text.splitlines() if line.startswith("model:"))  # flags may follow it
    probs = [float(t.split()[-1].rstrip(",)")) for t in model_line.split("(")[1].split(",")]
    assert sum(probs) == pytest.approx(1.0, abs=0.02) and f"model: {record.pred}" in text
