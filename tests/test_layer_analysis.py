"""creg analyze layers on the tiny fake model: the text->vision knock-out, blank patching and the
layer recommendation rule (creg.explain.layers)."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
import torch

from creg.explain.layers import (MIN_DROP, captured_inputs, knocked_out, layer_effects, patched_input,
                                  recommend_layers)
from creg.plugins.manager import get_plugins
from creg.config.run_config import RunConfig
from creg.config.resolve import build_benchmark
from creg.testing.fake_vlm import FakeVLMAdapter

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    cfg = RunConfig(adapter="none", n=3, bench_options={"width": 112, "height": 112})
    bench = build_benchmark(cfg, get_plugins())
    return FakeVLMAdapter(patch_px=14, seed=4, num_layers=3), bench, list(bench.samples())


def _vision_mask(out):
    m = torch.zeros(1, int(out.answer_index.max()) + 1, dtype=torch.bool)
    m[0, out.vision[0].token_index] = True
    return m


def test_knocking_out_every_block_makes_the_answer_blind_to_the_image(setup):
    adapter, bench, samples = setup
    s = samples[0]
    blank = bench.blank_sample(s)
    with torch.no_grad():
        a = adapter.forward([s]).class_logits
        b = adapter.forward([blank]).class_logits
        assert not torch.allclose(a, b)
        mask = _vision_mask(adapter.forward([s]))
        parts = adapter.model_parts()
        with ExitStack() as stack:
            for block in parts.blocks:
                stack.enter_context(knocked_out(block, parts.mask_kwarg, mask))
            ka, kb = adapter.forward([s]).class_logits, adapter.forward([blank]).class_logits
    torch.testing.assert_close(ka, kb)  # no text token reads a vision token anywhere


def test_patching_block_0_with_the_blank_gives_the_blank_answer(setup):
    adapter, bench, samples = setup
    s = samples[1]
    blank = bench.blank_sample(s)
    parts = adapter.model_parts()
    with torch.no_grad():
        out = adapter.forward([s])
        with captured_inputs(parts.blocks) as seen:
            want = adapter.forward([blank]).class_logits
        pos = out.vision[0].token_index
        with patched_input(parts.blocks[0], pos, seen[0][0, pos]):
            got = adapter.forward([s]).class_logits
    torch.testing.assert_close(got, want)  # at block 0's input only the vision tokens differ


def test_layer_effects_table(setup):
    adapter, bench, samples = setup
    result = layer_effects(adapter, samples[:2], bench.blank_sample)
    assert result["n"] == 2 and result["num_layers"] == 3
    assert [r["input_layer"] for r in result["blocks"]] == [-4, -3, -2]
    assert all(0.0 <= r["knockout_accuracy"] <= 1.0 for r in result["blocks"])
    assert "layers" in result["recommendation"]


def test_recommendation_rule_hand_cases():
    def rows(drops):
        return [{"knockout_logp_drop": d} for d in drops]

    # 6 blocks; the largest drop is 1.0 (block 2), block 4 costs 0.6 >= half of it: the last read is block 4,
    # CREG reads the inputs of blocks 3, 2, 1, 0 = hidden indices 3..0 = -4..-7 (N + 1 = 7)
    rec = recommend_layers(rows([0.0, 0.01, 1.0, 0.2, 0.6, 0.0]), 6)
    assert rec["read_blocks"] == [2, 4] and rec["last_read"] == 4 and rec["layers"] == [-4, -5, -6, -7]
    rec = recommend_layers(rows([0.0, 1.0, 0.0]), 3)  # read in block 1: only index 0 lies below
    assert rec["layers"] == [-4]
    assert recommend_layers(rows([2.0, 0.0, 0.0]), 3)["layers"] == [-4]  # block 0: the embedding output
    assert recommend_layers(rows([MIN_DROP / 2] * 3), 3)["layers"] is None


@pytest.mark.parametrize("command", ["layers", "randomize"])
def test_model_analyses_without_a_model_fail_in_one_line(command):
    from click.testing import CliRunner

    from creg.cli import cli

    res = CliRunner().invoke(cli, ["analyze", command, "--adapter", "none", "--limit", "1"])
    assert res.exit_code == 2 and "a model" in res.output and len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
