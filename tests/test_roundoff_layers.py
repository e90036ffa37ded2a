"""Which layers the round-off flag fires for (creg/sources/roundoff.py): its threshold by hand, the
eps of the block that reads a layer, and on pre-norm models -- a small random one, a random
Qwen2-VL and a short run of the trained toy -- layer -2 flagged and -3..-5 not (the measured
distributions: docs/paper-to-code.md, scripts/roundoff_separation.py)."""

import json

import pytest
import torch
from click.testing import CliRunner

from creg.plugins.adapter import VisionLayout
from creg.cli import cli
from creg.explain.context import ExplainContext
from creg.sources.contrastive_multilayer import CregSource
from creg.sources.roundoff import LOW_PRECISION_RATIO, ROUNDOFF_RATIO, norm_eps, roundoff_threshold
from creg.testing.fake_vlm import FakeVLMAdapter
from creg_synthetic.scenes import scene_sample


def _layout(index):
    return VisionLayout(token_index=torch.tensor(index), grid_hw=(1, len(index)),
                        cell_xy=torch.zeros(1, len(index), 2))


def test_threshold_by_hand():
    # token 0 is text (its variance 0 would give eps / eps = 1); vision tokens 1 and 2:
    # var_d (3, 1) = 1, var_d (4, 0) = 4  =>  with eps = 1: max(1 / 2, 1 / 5) = 0.5
    hidden = torch.tensor([[1.0, 1.0], [3.0, 1.0], [4.0, 0.0]])
    layout = _layout([1, 2])
    assert roundoff_threshold(hidden, layout, eps=1.0) == pytest.approx(0.5)
    assert roundoff_threshold(hidden, layout, eps=1e-3) == pytest.approx(1e-3 / (1 + 1e-3))
    # eps 0, or one too small to matter: float round-off, by the hidden states' dtype
    assert roundoff_threshold(hidden, layout) == ROUNDOFF_RATIO
    assert roundoff_threshold(hidden, layout, eps=1e-12) == ROUNDOFF_RATIO
    assert roundoff_threshold(hidden.double(), layout) == ROUNDOFF_RATIO
    assert roundoff_threshold(hidden.bfloat16(), layout) == LOW_PRECISION_RATIO


def test_norm_eps_is_the_largest_in_the_reading_block():
    adapter = FakeVLMAdapter(num_layers=4)
    assert norm_eps(adapter, -2) == 1e-5  # block 3's LayerNorms (torch's default eps)
    adapter.model.blocks[2].norm2.eps = 1e-3
    assert norm_eps(adapter, -3) == 1e-3 and norm_eps(adapter, -2) == 1e-5
    assert norm_eps(adapter, -1) == 0.0  # after the final norm: no block reads it
    assert norm_eps(None, -2) == 0.0


class _NoParts(FakeVLMAdapter):
    def model_parts(self):
        return None


def test_an_adapter_without_blocks_is_judged_on_round_off_alone():
    assert norm_eps(_NoParts(num_layers=4), -2) == 0.0


def _flags_and_ratios(adapter, n=3):
    source = CregSource()
    ctx = ExplainContext.for_sources([scene_sample(0, i, (224, 224)) for i in range(n)], adapter, [source])
    return [(m.flags, m.extra["cancellation"], m.extra["roundoff_threshold"]) for m in source.explain(ctx)]


def test_a_small_pre_norm_model_flags_minus_2_only():
    """FakeVLM: pre-norm LayerNorm blocks, random weights; -2 cancels to its norm's eps
    (ratio ~1.5e-6 against a threshold ~2e-5), -3..-5 measure ~0.04."""
    for flags, ratios, thresholds in _flags_and_ratios(FakeVLMAdapter(num_layers=6)):
        assert flags == ["roundoff_layer_-2"], (ratios, thresholds)


@pytest.mark.parametrize("read_block, flagged", [(-2, ["roundoff_layer_-2", "roundoff_layer_-3"]),
                                                  (-1, ["roundoff_layer_-2"])])
def test_a_read_block_s_input_is_flagged_when_nothing_else_reads_it(read_block, flagged):
    """The planted model (docs/planted.md) reads the vision tokens in one block only: the input
    of that block (-3 for read_block=-2) is round-off (ratio ~1e-7) as -2 is, unlike the toy's
    -3, whose residual stream the block above still reads."""
    from creg_planted.adapter import PlantedAdapter

    for flags, ratios, thresholds in _flags_and_ratios(PlantedAdapter(read_block=read_block), n=2):
        assert flags == flagged, (ratios, thresholds)


@pytest.mark.slow
def test_a_random_qwen2vl_flags_minus_2_only(tiny_qwen2vl_deep_dir):
    """A random 6-layer Qwen2-VL (hidden 64): its small hidden states leave -2 an eps residual of
    ~8e-4, which a fixed float round-off threshold would miss; the eps term catches it."""
    from creg.plugins.adapter import AdapterConfig
    from creg_qwen2vl.adapter import Qwen2VLAdapter

    adapter = Qwen2VLAdapter.load(AdapterConfig(model=str(tiny_qwen2vl_deep_dir), device="cpu"))
    for flags, ratios, thresholds in _flags_and_ratios(adapter):
        assert flags == ["roundoff_layer_-2"], (ratios, thresholds)
        assert ratios["-2"] > 10 * ROUNDOFF_RATIO  # the eps term, not round-off, flags it


@pytest.mark.slow
def test_a_short_toy_run_warns_of_minus_2_only_and_ig_converges(tmp_path):
    """The trained toy (qwen2vl-toy), the default benchmark's first 8 scenes: every creg and IG
    record is flagged at -2 and none at -3 (the input of the block that reads the image; its
    ratio is small, >= 7e-6 on the default 200 scenes, but eps- and precision-independent), -4
    or -5; IG's default (steps=auto) meets its 5% completeness tolerance, and the run prints it."""
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--adapter", "qwen2vl-toy", "--n", "8", "--source",
                                   "creg,integrated_gradients", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sources"]["creg"]["flags"] == {"roundoff_layer_-2": 8}
    assert summary["sources"]["integrated_gradients"]["flags"] == {"roundoff_layer_-2": 8}
    warned = sorted((w["source"], w["layer"]) for w in summary["warnings"] if w["kind"] == "roundoff")
    assert warned == [("creg", -2), ("integrated_gradients", -2)]
    gap = summary["sources"]["integrated_gradients"]["completeness_gap"]
    assert gap["n"] == 8 and gap["max"] <= 0.05 and gap["tolerance"] == 0.05 and gap["above"] == 0
    assert "Completeness gap of integrated_gradients" in res.output and "tolerance 0.05: all within" in res.output
