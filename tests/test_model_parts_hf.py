"""creg.hf declares every transformers VLM's model parts (ModelParts), and the layer analysis's text->vision
knock-out works through their real attention masks: with every block knocked out, the answer cannot see the image."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
import torch

from creg.plugins.adapter import AdapterConfig
from creg.explain.layers import knocked_out
from creg.plugins.manager import get_plugins
from creg.config.run_config import RunConfig
from creg.config.resolve import build_benchmark

torch.set_num_threads(1)


def _build(kind, root):
    if kind == "qwen2vl":
        from creg_qwen2vl.adapter import Qwen2VLAdapter
        from creg_qwen2vl.tiny import build_tiny_qwen2vl

        return Qwen2VLAdapter.load(AdapterConfig(model=str(build_tiny_qwen2vl(root, seed=0))))
    if kind == "llava":
        from creg_llava.adapter import LlavaAdapter
        from creg_llava.tiny import build_tiny_llava

        return LlavaAdapter.load(AdapterConfig(model=str(build_tiny_llava(root, seed=0))))
    from creg_internvl.adapter import InternVLAdapter
    from creg_internvl.tiny import build_tiny_internvl

    return InternVLAdapter.load(AdapterConfig(model=str(build_tiny_internvl(root, seed=0))))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["qwen2vl", "llava", "internvl"])
def test_hf_model_parts_and_knockout(kind, tmp_path):
    adapter = _build(kind, tmp_path)
    parts = adapter.model_parts()
    assert len(parts.blocks) == adapter.num_layers and parts.vision is not None
    assert parts.mask_kwarg == "attention_mask"
    cfg = RunConfig(adapter="none", n=1, bench_options={"width": 112, "height": 112})
    bench = build_benchmark(cfg, get_plugins())
    s = next(bench.samples())
    blank = bench.blank_sample(s)
    with torch.no_grad():
        out = adapter.forward([s])
        a, b = out.class_logits, adapter.forward([blank]).class_logits
        assert not torch.allclose(a, b)
        vis = torch.zeros(1, int(out.answer_index.max()) + 1, dtype=torch.bool)
        vis[0, out.vision[0].token_index] = True
        if out.vision[0].non_spatial_index is not None:
            vis[0, out.vision[0].non_spatial_index] = True
        with ExitStack() as stack:
            for block in parts.blocks:
                stack.enter_context(knocked_out(block, parts.mask_kwarg, vis))
            ka, kb = adapter.forward([s]).class_logits, adapter.forward([blank]).class_logits
    torch.testing.assert_close(ka, kb)
