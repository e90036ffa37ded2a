"""tools.creg_toy.shaping: the read-window and every-block-matters losses of the toy's training, and
the per-block probes that check them."""

from __future__ import annotations

import json

import pytest
import torch

from tools.creg_toy.data import Batcher, load_adapter, scenes
from tools.creg_toy.shaping import attention_weights, block_effects, knocked_out, read_penalty, text_to_vision_mass
from tools.creg_toy.training import STATE, ToyConfig, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    from creg_qwen2vl.tiny import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("toy") / "small", seed=0, text_layers=3, vision_depth=1)


def test_text_to_vision_mass_by_hand():
    """Tokens: [text, img, img, text, text]; the queries after the image are positions 3 and 4."""
    ids = torch.tensor([[5, 9, 9, 6, 7]])
    w = torch.zeros(1, 2, 5, 5)
    w[0, 0, 3] = torch.tensor([0.5, 0.25, 0.25, 0.0, 0.0])   # head 0, query 3: 0.5 on vision
    w[0, 0, 4] = torch.tensor([0.0, 0.0, 0.1, 0.4, 0.5])     # 0.1
    w[0, 1, 3] = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])     # 1.0
    w[0, 1, 4] = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])     # 0.0
    w[0, :, 0] = torch.tensor([1.0, 0, 0, 0, 0])             # queries before the image are not counted
    w[0, :, 1:3, 1] = 1.0
    assert float(text_to_vision_mass(w, ids, 9)) == pytest.approx((0.5 + 0.1 + 1.0 + 0.0) / 4)
    # "max": the query that reads most (head-averaged): query 3 reads (0.5 + 1.0) / 2
    assert float(text_to_vision_mass(w, ids, 9, reduce="max")) == pytest.approx(0.75)
    # the penalty averages the blocks outside the window only
    inside = torch.zeros_like(w)
    assert float(read_penalty([w, inside, w], ids, 9, (1, 1))) == pytest.approx(0.4)
    assert float(read_penalty([inside, w, inside], ids, 9, (1, 1))) == 0.0


def test_knocked_out_block_passes_its_input_through(small_dir):
    adapter = load_adapter(small_dir)
    model = adapter.model
    batch = Batcher(adapter)(list(scenes(0, 2)))
    with torch.no_grad(), knocked_out(model, 1):
        knocked = model(**batch, use_cache=False, output_hidden_states=True).hidden_states
    assert torch.equal(knocked[1], knocked[2])  # the input of block 2 is block 1's input
    with torch.no_grad():
        normal = model(**batch, use_cache=False, output_hidden_states=True).hidden_states
    assert not torch.allclose(normal[1], normal[2])


def test_attention_weights_are_collected_per_block_and_the_kernel_restored(small_dir):
    adapter = load_adapter(small_dir)
    model = adapter.model
    before = model.config._attn_implementation
    batch = Batcher(adapter)(list(scenes(0, 2)))
    with torch.no_grad(), attention_weights(model) as att:
        model(**batch, use_cache=False)
    assert len(att) == 3 and all(a is not None and a.shape[-1] == batch["input_ids"].shape[1] for a in att)
    assert torch.allclose(att[0].sum(-1), torch.ones(()), atol=1e-5)
    assert model.config._attn_implementation == before


def test_block_effects_report_every_block(small_dir):
    adapter = load_adapter(small_dir)
    rows = block_effects(adapter, Batcher(adapter), list(scenes(0, 4)))
    assert [r["block"] for r in rows] == [0, 1, 2]
    assert all(set(r) == {"block", "knockout_drop", "read_mass"} for r in rows)
    assert all(0.0 <= r["read_mass"] <= 1.0 for r in rows)
    assert any(abs(r["knockout_drop"]) > 0 for r in rows)  # a trained-or-not block changes the answer


def test_shaped_training_logs_its_losses_and_resumes_to_the_same_weights(small_dir, tmp_path):
    def cfg():
        return ToyConfig(init_from=str(small_dir), steps=3, batch_size=4, warmup=1, eval_n=4, log_every=1,
                         eval_every=3, save_every=10, read_window=(1, 1), read_weight=1.0, knockout_weight=1.0,
                         knockout_samples=2)

    whole = train(cfg(), tmp_path / "whole", log=lambda m: None)
    rec = whole["history"][1]
    assert 0.0 <= rec["read_outside"] <= 1.0 and rec["knockout_gap"].keys() == {"0"}
    train(cfg(), tmp_path / "parts", log=lambda m: None, stop_at=2)
    train(cfg(), tmp_path / "parts", log=lambda m: None)
    a = torch.load(tmp_path / "whole" / STATE, weights_only=False)["model"]
    b = torch.load(tmp_path / "parts" / STATE, weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = json.loads((tmp_path / "whole" / "training_config.json").read_text())
    assert saved["read_window"] == [1, 1] and saved["knockout_weight"] == 1.0


def test_reinit_outputs_gives_an_identity_grown_block_fresh_output_projections(small_dir, tmp_path):
    from tools.creg_toy.growth import grow_checkpoint, reinit_outputs

    grow_checkpoint(small_dir, tmp_path / "deep", text_layers=4, vision_depth=1, seed=1)
    layers = load_adapter(tmp_path / "deep").model.model.language_model.layers
    assert layers[2].self_attn.o_proj.weight.abs().max() == 0  # grown as an identity (3 -> 4: new block 2)
    keep = layers[1].self_attn.o_proj.weight.clone()
    reinit_outputs(tmp_path / "deep", [2], seed=3)
    layers = load_adapter(tmp_path / "deep").model.model.language_model.layers
    w = layers[2].self_attn.o_proj.weight
    assert w.abs().max() > 0 and float(w.std()) == pytest.approx(w.shape[1] ** -0.5, rel=0.3)
    assert layers[2].mlp.down_proj.weight.abs().max() > 0
    assert torch.equal(layers[1].self_attn.o_proj.weight, keep)


def test_knockout_block_visits_each_block_then_follows_the_laggard():
    from tools.creg_toy.training import knockout_block

    assert knockout_block([None, None, None]) == 0
    assert knockout_block([0.5, None, None]) == 1
    assert knockout_block([0.5, 0.02, 1.3]) == 1
    assert knockout_block([0.5, 0.7, -0.1]) == 2
