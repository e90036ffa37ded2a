"""A source's records do not depend on which other sources share the run (issue 12, item 4).

Attention maps are computed beside the gradient pass's own SDPA kernel from the same query and
key, under no_grad (creg.hf.attention_stream), so adding attention_rollout leaves the gradient
pass -- kernels, graph, round-off -- as it was: CREG's records are byte-identical with and
without it. At hidden index -2 CREG's
Grad x Act at vision tokens is round-off (docs/paper-to-code.md), so any change of kernel
would show in its compass values.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from creg.cli import cli
from creg.explain.context import ExplainContext
from creg.sources.attention_rollout import AttentionRolloutSource
from creg.sources.contrastive_multilayer import CregSource
from creg.sources.gradcam import GradCamSource
from creg.sources.integrated_gradients import IntegratedGradientsSource
from creg.testing.fake_vlm import FakeVLMAdapter
from creg_synthetic.scenes import scene_sample


def _records(out, source: str) -> list[str]:
    lines = (out / "records.jsonl").read_text().splitlines()
    return [line for line in lines if json.loads(line)["source"] == source]


def _run(tmp_path, name: str, sources: str, source: str = "creg") -> tuple[list[str], str]:
    out = tmp_path / name
    opts = ["--source-opt", "integrated_gradients.steps=4"] if "integrated_gradients" in sources else []
    res = CliRunner().invoke(cli, ["run", "--adapter", "qwen2vl-toy", "--bench", "synthetic", "--n", "6",
                                   "--batch-size", "3", "--source", sources, *opts,
                                   "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    return _records(out, source), (out / "samples.jsonl").read_text()  # per-sample facts (logits) too


def test_creg_records_are_byte_identical_with_and_without_attention_rollout(tmp_path):
    alone = _run(tmp_path, "alone", "creg")
    assert len(alone[0]) == 6 and alone[1].count("\n") == 6
    assert _run(tmp_path, "with_rollout", "creg,attention_rollout") == alone
    assert _run(tmp_path, "rollout_first", "attention_rollout,gradcam,integrated_gradients,creg") == alone


def test_creg_gt_records_are_byte_identical_alone_and_sharing_creg_s_backward(tmp_path):
    """When every prediction of a batch is correct, creg_gt takes creg's (pred-contrastive)
    gradients instead of a backward of its own (creg.explain.context); its records must not move."""
    alone = _run(tmp_path, "gt_alone", "creg_gt", "creg_gt")
    assert len(alone[0]) == 6
    assert _run(tmp_path, "gt_with_creg", "creg,creg_gt,attention_rollout", "creg_gt") == alone


def test_the_gradient_pass_never_switches_kernels_and_also_serves_the_rollout(monkeypatch):
    """The toy Qwen2-VL keeps its configured kernel whatever the run holds, and its one gradient
    pass streams the attention maps too (no second forward)."""
    from creg.config.presets import load_registry
    from creg.plugins.manager import get_plugins

    preset = load_registry()["qwen2vl-toy"]
    adapter = get_plugins().load("adapter", preset.adapter).load(preset.adapter_config())
    samples = [scene_sample(0, i, (224, 224)) for i in range(2)]
    switched, forwards = [], []
    real_switch, real_forward = adapter.model.set_attn_implementation, adapter.forward
    monkeypatch.setattr(adapter.model, "set_attn_implementation", lambda name: switched.append(name) or real_switch(name))
    monkeypatch.setattr(adapter, "forward", lambda s, r, **k: forwards.append((r, torch.is_grad_enabled())) or real_forward(s, r, **k))
    creg, rollout = CregSource(), AttentionRolloutSource()
    ctx = ExplainContext.for_sources(samples, adapter, [creg, rollout])
    creg.explain(ctx)
    rollout.explain(ctx)
    assert switched == [] and adapter.model.config.text_config._attn_implementation == "sdpa"
    assert len(forwards) == 1 and forwards[0][0].attentions and forwards[0][1]
    assert ctx.attention_reader(rollout).layers_seen == adapter.num_layers


@pytest.mark.parametrize("companions", [[AttentionRolloutSource], [GradCamSource, IntegratedGradientsSource],
                                        [AttentionRolloutSource, GradCamSource]])
def test_fake_vlm_creg_maps_are_identical_whatever_shares_the_batch(companions):
    adapter = FakeVLMAdapter(d=32, dv=16, heads=4, num_layers=5, seed=3)
    samples = [scene_sample(0, i, (224, 160)) for i in range(3)]
    alone = CregSource().explain(ExplainContext.for_sources(samples, adapter, [CregSource()]))
    sources = [cls() for cls in companions] + [CregSource()]
    ctx = ExplainContext.for_sources(samples, adapter, sources)
    for src in sources:
        maps = src.explain(ctx)
    for a, b in zip(alone, maps):
        assert torch.equal(a.values, b.values)
