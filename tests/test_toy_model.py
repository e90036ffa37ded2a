"""The shipped toy Qwen2-VL (preset qwen2vl-toy) really answers left/right/above/below.

Held-out scenes: seed 0 of the synthetic benchmark, creg 0.1's layout (training used seeds >= 1000).
"""

from __future__ import annotations

import pytest
import torch

from creg.adapter import AdapterConfig
from creg.sample import RELATIONS
from creg_qwen2vl.adapter import Qwen2VLAdapter
from creg_toy import CHECKPOINT_DIR
from creg_synthetic.scenes import scene_sample

N = 120  # a multiple of 4: 30 scenes per relation


@pytest.fixture(scope="module")
def adapter():
    torch.set_num_threads(2)
    if not (CHECKPOINT_DIR / "model.safetensors").is_file():
        pytest.fail(f"the toy checkpoint is missing: {CHECKPOINT_DIR}")
    return Qwen2VLAdapter.load(AdapterConfig(model=str(CHECKPOINT_DIR), dtype="float32", device="cpu"))


def test_checkpoint_is_small_and_complete():
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.json", "preprocessor_config.json"):
        assert (CHECKPOINT_DIR / name).is_file(), name
    size = sum(p.stat().st_size for p in CHECKPOINT_DIR.iterdir() if p.is_file())
    assert size < 5_000_000, f"checkpoint is {size} bytes"


def test_toy_model_accuracy_on_held_out_scenes(adapter):
    samples = [scene_sample(0, i, layout="legacy") for i in range(N)]  # the layout it was trained on
    pred = torch.cat([adapter.forward(samples[i : i + 40]).predictions.cpu() for i in range(0, N, 40)])
    gold = torch.tensor([s.option for s in samples])
    acc = (pred == gold).float().mean().item()
    per_class = {r: (pred[gold == c] == c).float().mean().item() for c, r in enumerate(RELATIONS)}
    assert acc >= 0.9, f"accuracy {acc:.3f}, per class {per_class}"
    assert min(per_class.values()) >= 0.75, per_class
