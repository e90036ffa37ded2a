"""The shipped toy Qwen2-VL (preset qwen2vl-toy) really answers left/right/above/below, and its
answers follow the image when it is flipped.

Held-out scenes: seed 0 of the synthetic benchmark, default layout (training drew its scenes
from seeds >= 1e9; docs/toy-model.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from creg.plugins.adapter import AdapterConfig
from creg.plugins.manager import get_plugins
from creg.config.presets import load_registry, resolve_model
from creg.core.sample import RELATIONS
from tools.creg_toy.data import FLIP_RELATION, flip_sample, scenes

N = 400  # a multiple of 4: 100 scenes per relation (as `python -m tools.creg_toy eval --n 400` in docs/toy-model.md)
#: the checkpoint the preset names, as an install finds it (creg's package data)
CHECKPOINT_DIR = Path(resolve_model(load_registry([])["qwen2vl-toy"].model))


@pytest.fixture(scope="module")
def adapter():
    torch.set_num_threads(1)  # on a shared machine 2 threads spin-wait (docs/toy-model.md)
    if not (CHECKPOINT_DIR / "model.safetensors").is_file():
        pytest.fail(f"the toy checkpoint is missing: {CHECKPOINT_DIR}")
    cls = get_plugins().load("adapter", "qwen2vl")
    return cls.load(AdapterConfig(model=str(CHECKPOINT_DIR), dtype="float32", device="cpu"))


def _predict(adapter, samples):
    return torch.cat([adapter.forward(samples[i : i + 40]).predictions.cpu() for i in range(0, len(samples), 40)])


def test_checkpoint_is_small_complete_and_deep_enough():
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.json", "preprocessor_config.json", "training_config.json", "training_log.json"):
        assert (CHECKPOINT_DIR / name).is_file(), name
    size = sum(p.stat().st_size for p in CHECKPOINT_DIR.iterdir() if p.is_file())
    assert size < 20_000_000, f"checkpoint is {size} bytes"
    conf = json.loads((CHECKPOINT_DIR / "config.json").read_text())
    assert conf["text_config"]["num_hidden_layers"] >= 8 and conf["vision_config"]["depth"] >= 4


@pytest.mark.slow
def test_toy_model_accuracy_grid_and_flip_equivariance_on_held_out_scenes(adapter):
    samples = list(scenes(0, N))
    out = adapter.forward(samples[:1])
    assert min(out.vision[0].grid_hw) >= 12  # the token grid on the default 224x224 scenes
    pred = _predict(adapter, samples)
    gold = torch.tensor([s.option for s in samples])
    acc = (pred == gold).float().mean().item()
    per_class = {r: (pred[gold == c] == c).float().mean().item() for c, r in enumerate(RELATIONS)}
    assert acc >= 0.95, f"accuracy {acc:.3f}, per class {per_class}"
    assert min(per_class.values()) >= 0.95, per_class
    for how in ("h", "v"):
        flipped = _predict(adapter, [flip_sample(s, how) for s in samples])
        mirrored = torch.tensor([RELATIONS.index(FLIP_RELATION[how][RELATIONS[int(p)]]) for p in pred])
        agree = (flipped == mirrored).float().mean().item()
        assert agree >= 0.95, f"flip equivariance ({how}) {agree:.3f}"


@pytest.mark.slow
def test_every_decoder_block_matters_and_the_image_is_read_in_the_upper_half(adapter):
    """Knocking out any one block (its input passed through), or patching the vision tokens at its
    input with the blank scene's, costs >= 0.1 nats of log p(gt) on average; the text->vision
    knock-out that costs most is in the upper half of the blocks, and the upper half's knock-outs
    cost more than the lower half's (block 0 still reads some: docs/toy-model.md)."""
    from creg.explain.layers import layer_effects
    from tools.creg_toy.data import Batcher, blank_sample
    from tools.creg_toy.shaping import block_effects

    samples = list(scenes(4242, 16))
    reads = layer_effects(adapter, samples, blank_sample)["blocks"]
    for row, effect in zip(block_effects(adapter, Batcher(adapter), samples), reads):
        assert max(row["knockout_drop"], effect["patch_logp_drop"]) >= 0.1, (row, effect)
    drops = [r["knockout_logp_drop"] for r in reads]
    n = len(drops)
    assert max(range(n), key=drops.__getitem__) >= n // 2, drops
    assert sum(drops[n // 2:]) > sum(max(d, 0.0) for d in drops[: n // 2]), drops
