"""CREG's two options beyond the paper: activation=h_minus_blank (g * (h - h_blank)) and layers=auto
(resolved once per run from the layer analysis, cached in RUN_DIR/layers.json)."""

from __future__ import annotations

import json

import pytest
import torch

from creg.plugins.adapter import ForwardRequest
from creg.explain.context import ExplainContext
from creg.core.blank import uniform_blank
from creg.plugins.manager import get_plugins
from creg.config.run_config import RunConfig
from creg.config.resolve import build_benchmark, build_source
from creg.execution.runner import Runner
from creg.sources.contrastive_multilayer import CregSource, aggregate_layers
from creg.sources.token_grid import vision_tokens
from creg.testing.fake_vlm import FakeVLMAdapter

torch.set_num_threads(1)


def _samples(n=2):
    cfg = RunConfig(adapter="none", n=n, bench_options={"width": 112, "height": 112})
    return list(build_benchmark(cfg, get_plugins()).samples())


def test_h_minus_blank_is_grad_times_the_difference_to_the_blank_hidden_state():
    adapter = FakeVLMAdapter(patch_px=14, seed=3, num_layers=4)
    samples = _samples()
    src = build_source("creg", CregSource, {"layers": [-2, -3], "activation": "h_minus_blank"})
    ctx = ExplainContext.for_sources(samples, adapter, [src])
    got = src.vision_relevance(ctx)
    grads = ctx.gradients(src.target, (-2, -3))
    with torch.no_grad():
        blank = adapter.forward(samples, ForwardRequest(layers=(-2, -3)),
                                images=[uniform_blank(s).load_image() for s in samples])
    for i in range(len(samples)):
        raw = torch.stack([
            vision_tokens((grads[l][i].float() * (ctx.output.hidden[l][i].detach() - blank.hidden[l][i]).float())
                          .sum(-1).abs()[:, None], ctx.layout(i))[:, 0]
            for l in (-2, -3)])  # Eq. 2 with h - h_blank, then Eq. 3 as published
        want, w = aggregate_layers(raw)
        torch.testing.assert_close(got[i][0], want)
        torch.testing.assert_close(got[i][1], w)
    plain = build_source("creg", CregSource, {"layers": [-2, -3]})
    assert not torch.allclose(plain.vision_relevance(ExplainContext.for_sources(samples, adapter, [plain]))[0][0], got[0][0])


def test_layers_auto_is_an_option_value_and_refused_where_nothing_resolves_it():
    src = build_source("creg", CregSource, {"layers": "AUTO"})
    assert src.layers == "auto"
    with pytest.raises(ValueError, match="layers=auto is resolved by `creg run`"):
        src.request()


def test_layers_auto_resolved_once_per_run_and_recorded(tmp_path, monkeypatch):
    from creg.explain import layers as layer_analysis

    calls = []
    real = layer_analysis.layer_effects

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(layer_analysis, "layer_effects", counted)
    cfg = RunConfig(sources=["creg", "random"], n=3, source_options={"creg": {"layers": "auto"}},
                    bench_options={"width": 112, "height": 112})
    out = tmp_path / "run"

    def run():
        return Runner(cfg, out, adapter=FakeVLMAdapter(patch_px=14, seed=2, num_layers=3), progress=False,
                      log=lambda _: None).run()

    first = run()
    cache = json.loads((out / "layers.json").read_text())
    layers = cache["layers"]
    assert calls == [1] and len(cache["analysis"]["blocks"]) == 3
    assert all(-4 <= l <= -1 for l in layers)
    assert first.summary["layers_auto"]["layers"] == layers
    assert json.loads((out / "config.json").read_text())["layers_auto"]["layers"] == layers
    again = run()  # a resume: the cache, not a second measurement
    assert calls == [1] and again.processed == 0 and again.summary["layers_auto"]["layers"] == layers


def test_rebuilding_a_runs_sources_uses_its_resolved_auto_layers():
    from creg.execution.auto_layers import resolved_source_options

    doc = {"run": {"source_options": {"creg": {"layers": "auto", "contrastive": False}, "gradxact": {"layer": -3}}},
           "layers_auto": {"layers": [-4, -5]}}
    assert resolved_source_options(doc) == {"creg": {"layers": [-4, -5], "contrastive": False}, "gradxact": {"layer": -3}}
    assert resolved_source_options({"run": {"source_options": {"creg": {"layers": "auto"}}}}) == {"creg": {"layers": "auto"}}
