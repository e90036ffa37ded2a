"""The Python API: creg.load / Model.explain / Explanation.plot / creg.run / creg.read_run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import creg
from creg.api import RUN_DEFAULTS, ApiError

torch.set_num_threads(1)


def scene() -> Image.Image:
    """A grey image with a red square (the reference) left of a blue one (the target)."""
    img = Image.new("RGB", (224, 160), (235, 235, 235))
    img.paste((200, 30, 30), (20, 60, 60, 100))
    img.paste((30, 30, 200), (160, 60, 200, 100))
    return img


REF = ("red square", (20, 60, 60, 100))
TGT = ("blue square", (160, 60, 200, 100))


def test_import_creg_stays_light():
    code = "import creg, sys; print(sorted(m for m in ('torch', 'matplotlib', 'pandas', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert {"load", "run", "read_run", "Box"} <= set(dir(creg))


def test_explain_without_model_gives_maps_compasses_and_metrics(tmp_path):
    m = creg.load("none")
    ex = m.explain(scene(), ref=REF, tgt=(TGT[0], creg.Box(x0=160, y0=60, x1=200, y1=100)),
                   sources=["oracle", "random", "target_box"])
    assert list(ex.sources) == ["oracle", "random", "target_box"]
    assert ex.answer is None and ex.logits is None and ex.relation == "right" and not ex.relation_given
    o = ex["oracle"]
    assert o.compass.shape == (8,) and o.compass.sum() == pytest.approx(1.0)
    assert o.relevance.ndim == 2 and o.cell_xy.shape == (*o.relevance.shape, 2)
    assert o.peak == "E" and o.dae == pytest.approx(0.0) and o.ea is True
    assert o.d_ab == pytest.approx(140.0) and o.r_max == pytest.approx(280.0)
    # the cells tile the image: centres inside it, the hottest cell of target_box inside B
    tb = ex["target_box"]
    u, v = np.unravel_index(np.argmax(tb.relevance), tb.relevance.shape)
    x, y = tb.cell_xy[u, v]
    assert 160 <= x <= 200 and 60 <= y <= 100
    assert ex["random"].record.source == "random"
    with pytest.raises(KeyError, match="was not explained"):
        ex["creg"]
    d = json.loads(json.dumps(ex.to_dict(maps=True)))
    assert d["sources"]["oracle"]["compass"]["E"] == pytest.approx(float(o.compass[0]))
    assert np.asarray(d["sources"]["target_box"]["relevance"]).shape == tb.relevance.shape
    path = ex.plot(tmp_path / "ex.png", dpi=60)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert "peak: E (sector 0)" in str(ex)
    assert repr(ex).startswith("Explanation('blue square' vs 'red square', true right; oracle: peak E, DAE 0.0°")
    assert repr(o) == "SourceExplanation('oracle', peak E (0.0°), DAE 0.0°, EA True, grid (1, 1))"


def test_explain_accepts_a_path_and_checks_its_input(tmp_path):
    scene().save(tmp_path / "s.png")
    m = creg.load("none")
    ex = m.explain(tmp_path / "s.png", ref=REF, tgt=TGT, sources="oracle", relation="right")
    assert ex.sample.id == "s" and ex.relation_given
    with pytest.raises(ApiError, match="x0, y0, x1, y1"):
        m.explain(scene(), ref=("a", (1, 2, 3)), tgt=TGT, sources=["oracle"])
    with pytest.raises(ApiError, match="x0 must be < x1"):
        m.explain(scene(), ref=("a", (50, 2, 10, 30)), tgt=TGT, sources=["oracle"])
    with pytest.raises(ApiError, match="outside the image"):
        m.explain(scene(), ref=REF, tgt=("b", (150, 60, 400, 100)), sources=["oracle"])
    with pytest.raises(ApiError, match="not found"):
        m.explain(tmp_path / "missing.png", ref=REF, tgt=TGT, sources=["oracle"])
    with pytest.raises(ApiError, match="needs a model"):
        m.explain(scene(), ref=REF, tgt=TGT, sources=["creg"])
    with pytest.raises(ApiError, match="ogger|oracle"):  # did-you-mean
        m.explain(scene(), ref=REF, tgt=TGT, sources=["oracel"])


def test_load_a_local_directory_infers_the_adapter_and_explains_with_one_gradient_pass(tiny_qwen2vl_dir):
    m = creg.load(str(tiny_qwen2vl_dir), dtype="float32", device="cpu")
    calls = []
    forward = m.adapter.forward
    m.adapter.forward = lambda *a, **kw: calls.append(1) or forward(*a, **kw)
    ex = m.explain(scene(), ref=REF, tgt=TGT, sources=["creg", "attention_rollout", "gradnorm"])
    # one gradient pass for all three sources: the rollout's attention maps are computed beside
    # its own SDPA kernel without changing its numerics (creg.hf.attention_stream)
    assert len(calls) == 1
    assert ex.logits.shape == (4,) and ex.answer in ("left", "right", "above", "below")
    assert sum(ex.probs.values()) == pytest.approx(1.0)
    assert ex.correct == (ex.answer == "right")
    for s in ex:
        assert s.compass.sum() == pytest.approx(1.0) and s.relevance.shape == s.cell_xy.shape[:2]
        assert s.record.pred == ex.answer
    with pytest.raises(ApiError, match="adapter plugin, not a model"):
        creg.load("qwen2vl")


def test_explain_matches_a_run_of_the_same_sample(tiny_qwen2vl_dir, tmp_path):
    """The API and the runner score a sample identically (same projection, same tie-breaks)."""
    from creg.plugins.manager import get_plugins
    from creg.config.run_config import RunConfig
    from creg.config.resolve import build_benchmark

    run = tmp_path / "run"
    summary = creg.run(adapter="qwen2vl", model=str(tiny_qwen2vl_dir), dtype="float32", device="cpu",
                       sources=["creg", "oracle"], n=2, out=run, bench_options={"width": 112, "height": 112})
    assert summary["out"] == str(run) and summary["n_samples"] == 2
    from creg.store import RunStore

    records = [r.model_dump() for r in RunStore.read(run).records()]
    sample = list(build_benchmark(RunConfig(n=2, bench_options={"width": 112, "height": 112}), get_plugins()).samples())[0]
    m = creg.load(str(tiny_qwen2vl_dir), adapter="qwen2vl", dtype="float32", device="cpu")
    ex = m.explain(sample.load_image(), ref=(sample.ref_name, sample.ref_box), tgt=(sample.tgt_name, sample.tgt_box),
                   sources=["creg", "oracle"], relation=sample.relation, id=sample.id)
    for name in ("creg", "oracle"):
        rec = next(r for r in records if r["sample_id"] == sample.id and r["source"] == name)
        assert ex[name].compass == pytest.approx(np.asarray(rec["compass"]), abs=1e-6)
        assert ex[name].peak_sector == rec["peak_sector"]
    assert ex.logits == pytest.approx(np.asarray(rec["logits"]), abs=1e-4)


def test_run_defaults_are_the_cli_defaults():
    from creg.cli.run import run_cmd

    cli_names = {"sources": "sources", "registries": "registry", "source_opt": "source_options",
                 "bench_opt": "bench_options", "no_progress": "progress"}
    parsed = run_cmd.make_context("run", [], resilient_parsing=True).params  # what `creg run` gets with no options
    seen = set()
    for param in run_cmd.params:
        key = cli_names.get(param.name, param.name)
        if key not in RUN_DEFAULTS:
            continue
        seen.add(key)
        default = parsed[param.name]
        if key == "sources":
            default = [s for s in default.split(",") if s]
        elif key in ("source_options", "bench_options"):  # KEY=VALUE items, none by default
            assert not default, key
            default = {}
        elif key in ("registry", "controls"):  # a repeatable option: a tuple on the CLI, a list in the API
            default = list(default or [])
        elif key == "progress":
            continue  # the CLI shows a bar on a terminal; the API is quiet
        assert RUN_DEFAULTS[key] == default, key
    assert seen >= {"adapter", "sources", "bench", "n", "seed", "out", "k", "sigma_r", "rho_r", "batch_size", "cos", "cos_op"}


def test_run_refuses_unknown_options():
    with pytest.raises(ApiError, match="unknown option"):
        creg.run(source=["oracle"])


def test_read_run_gives_tidy_frames(tmp_path):
    pytest.importorskip("pandas")
    summary = creg.run(adapter="none", sources="oracle,random", limit=6, out=tmp_path / "r")
    f = creg.read_run(summary["out"])
    recs = f.records
    assert len(recs) == 12 and set(recs["source"]) == {"oracle", "random"}
    assert recs.groupby("sample_id").size().eq(2).all()
    sectors = ["p_E", "p_NE", "p_N", "p_NW", "p_W", "p_SW", "p_S", "p_SE"]
    assert all(c in recs.columns for c in sectors)
    assert np.allclose(recs[sectors].sum(axis=1), 1.0)
    assert (recs["peak"] == recs.apply(lambda r: sectors[r["peak_sector"]][2:], axis=1)).all()
    for col in ("ref_name", "tgt_name", "ref_x0", "tgt_y1", "image_width", "d_ab"):
        assert col in recs.columns and recs[col].notna().all(), col
    assert not any(isinstance(v, (dict, list)) for v in recs.iloc[0].values)
    assert len(f.compass) == 12 * 8 and set(f.compass["direction"]) == {s[2:] for s in sectors}
    assert f.summary.set_index("source").loc["oracle", "dae"] == pytest.approx(0.0)
    assert {"dae_ci_lo", "dae_ci_hi", "ea", "n"} <= set(f.summary.columns)
    assert f.config["n"] == 6


def test_read_run_flattens_cos(tmp_path):
    pytest.importorskip("pandas")
    from fake_vlm import FakeVLMAdapter
    from creg.execution.runner import Runner, RunConfig

    run = tmp_path / "run"
    Runner(RunConfig(sources=["oracle", "random"], n=3, cos=True, bench_options={"width": 112, "height": 112}), run,
           adapter=FakeVLMAdapter(patch_px=14, seed=5), progress=False, log=lambda _: None).run()
    recs = creg.read_run(run).records
    cos_cols = [c for c in recs.columns if c.startswith("cos_")]
    assert "cos_peak_delta" in cos_cols and "cos_true_delta" in cos_cols
    assert all(not isinstance(v, (dict, list)) for c in cos_cols for v in recs[c])
    assert recs["logit_left"].notna().all()


def test_explain_cli_several_sources_json_and_figure(tmp_path):
    from creg.cli import cli

    scene().save(tmp_path / "s.png")
    out = tmp_path / "fig"
    result = CliRunner().invoke(cli, ["explain", "--adapter", "none", "--image", str(tmp_path / "s.png"),
                                      "--source", "oracle,target_box", "--ref", "cup", "--ref-box", "20,60,60,100",
                                      "--tgt", "plate", "--tgt-box", "160,60,200,100", "--json", "--out", str(out),
                                      "--format", "svg", "--dpi", "50"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data["sources"]) == ["oracle", "target_box"] and data["sources"]["oracle"]["peak"] == "E"
    assert data["figure"].endswith("fig.svg") and (tmp_path / "fig.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    bad = CliRunner().invoke(cli, ["explain", "--adapter", "none", "--image", str(tmp_path / "s.png"), "--source", "oracle",
                                   "--ref", "cup", "--ref-box", "20,60,60,100", "--tgt", "plate", "--tgt-box",
                                   "160,60,200,100", "--out", str(tmp_path / "x.png"), "--format", "pdf"])
    assert bad.exit_code == 2 and "--format is pdf" in bad.output


def test_explain_cli_defaults_to_the_toy_model(tmp_path):
    from creg.cli import cli

    scene().save(tmp_path / "s.png")
    result = CliRunner().invoke(cli, ["explain", "--image", str(tmp_path / "s.png"), "--ref", "red square",
                                      "--ref-box", "20,60,60,100", "--tgt", "blue square", "--tgt-box", "160,60,200,100",
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "qwen2vl-toy" and list(data["sources"]) == ["creg"]
    assert data["answer"] == "right"  # the trained toy model reads this scene


def test_offline_hub_id_fails_at_once(monkeypatch, tmp_path):
    import time

    from creg.cli import cli
    from creg.config.hub import ModelUnavailable, hub_reachable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailable, match="huggingface-cli download someone/not-cached"):
        creg.load("someone/not-cached", adapter="qwen2vl")
    scene().save(tmp_path / "s.png")
    result = CliRunner().invoke(cli, ["explain", "--adapter", "qwen2vl", "--model", "someone/not-cached",
                                      "--image", str(tmp_path / "s.png"), "--ref", "a", "--ref-box", "20,60,60,100",
                                      "--tgt", "b", "--tgt-box", "160,60,200,100"])
    assert result.exit_code == 2 and "HF_HUB_OFFLINE is set" in result.output and "Traceback" not in result.output
    assert time.perf_counter() - t0 < 30  # not the minutes of a loader's retries
    with pytest.raises(ModelUnavailable, match="directory not found"):
        creg.load("./no/such/dir", adapter="qwen2vl")
    # no network: a closed local port stands in for the hub
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert hub_reachable(timeout=2) is False
    with pytest.raises(ModelUnavailable, match="cannot be reached"):
        creg.load("someone/not-cached", adapter="qwen2vl")
