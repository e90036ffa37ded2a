"""A source's records do not depend on which other sources share the run (issue 12, item 4).

Attention maps come from their own no-grad pass (creg.context), so adding attention_rollout
(which needs eager attention) leaves the gradient pass -- kernels, graph, round-off -- as it
was: CREG's records are byte-identical with and without it. At hidden index -2 CREG's
Grad x Act at vision tokens is round-off (docs/paper-to-code.md), so any change of kernel
would show in its compass values.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from creg.cli import cli
from creg.context import ExplainContext
from creg.sources.attention_rollout import AttentionRolloutSource
from creg.sources.contrastive_multilayer import CregSource
from creg.sources.gradcam import GradCamSource
from creg.sources.integrated_gradients import IntegratedGradientsSource
from creg.testing.fake_vlm import FakeVLMAdapter
from creg_synthetic.scenes import scene_sample


def _records(out, source: str) -> list[str]:
    lines = (out / "records.jsonl").read_text().splitlines()
    return [line for line in lines if json.loads(line)["source"] == source]


def _run(tmp_path, name: str, sources: str) -> tuple[list[str], str]:
    out = tmp_path / name
    opts = ["--source-opt", "integrated_gradients.steps=4"] if "integrated_gradients" in sources else []
    res = CliRunner().invoke(cli, ["run", "--adapter", "qwen2vl-toy", "--bench", "synthetic", "--n", "6",
                                   "--batch-size", "3", "--source", sources, *opts,
                                   "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    return _records(out, "creg"), (out / "samples.jsonl").read_text()  # per-sample facts (logits) too


def test_creg_records_are_byte_identical_with_and_without_attention_rollout(tmp_path):
    alone = _run(tmp_path, "alone", "creg")
    assert len(alone[0]) == 6 and alone[1].count("\n") == 6
    assert _run(tmp_path, "with_rollout", "creg,attention_rollout") == alone
    assert _run(tmp_path, "rollout_first", "attention_rollout,gradcam,integrated_gradients,creg") == alone


def test_the_gradient_pass_never_uses_eager_attention(monkeypatch):
    """The toy Qwen2-VL's gradient pass runs with its configured kernel whatever the run holds;
    only the attention pass (no grad) switches to eager."""
    from creg.registry import load_registry
    from creg.plugins import get_plugins

    preset = load_registry()["qwen2vl-toy"]
    adapter = get_plugins().load("adapter", preset.adapter).load(preset.adapter_config())
    samples = [scene_sample(0, i, (224, 224)) for i in range(2)]
    seen = []
    real = adapter.model.set_attn_implementation
    monkeypatch.setattr(adapter.model, "set_attn_implementation",
                        lambda name: seen.append((name, torch.is_grad_enabled())) or real(name))
    creg, rollout = CregSource(), AttentionRolloutSource()
    ctx = ExplainContext.for_sources(samples, adapter, [creg, rollout])
    creg.explain(ctx)
    assert seen == []
    rollout.explain(ctx)
    assert seen and all(not grad for _, grad in seen)


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
