"""The planted adapter: the adapter contract, its exact causal effects against one-token removal,
and a model that answers the synthetic scenes from A's and B's cells."""

from __future__ import annotations

import pytest
import torch

from creg.plugins.adapter import AdapterConfig, ForwardRequest
from creg.core.ground_truth import logit_gap
from creg.testing import AdapterContract
from creg_planted.adapter import PlantedAdapter
from creg_synthetic.benchmark import SyntheticBenchmark


@pytest.fixture(scope="module")
def planted():
    return PlantedAdapter.load(AdapterConfig(model="planted", options={}))


@pytest.fixture(scope="module")
def scenes():
    return list(SyntheticBenchmark(n=8, seed=3).samples())


class TestPlantedContract(AdapterContract):
    """The default planted model (read in block 4 of 6)."""

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls, planted):
        return planted


class TestPlantedLastContract(AdapterContract):
    """The read in the last block, a decoy head, A's position given in the text."""

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls):
        return PlantedAdapter(read_block=-1, decoy=True, reference="text")


def test_palette_is_the_synthetic_benchmarks():
    from creg_planted.vision import PALETTE, SHAPES
    from creg_synthetic.scenes import COLOURS, SHAPES as SCENE_SHAPES

    assert PALETTE == COLOURS and set(SHAPES) == set(SCENE_SHAPES)


@pytest.mark.parametrize("options", [{}, {"read_block": 1}, {"read_block": -1, "decoy": True}, {"reference": "text"}])
def test_answers_the_scenes(options, scenes):
    ad = PlantedAdapter(**options)
    pred = ad.forward(scenes).class_logits.argmax(1)
    assert pred.tolist() == [s.option for s in scenes]


def test_answers_scenes_with_distractors():
    scenes = list(SyntheticBenchmark(n=8, seed=5, distractors=3).samples())
    pred = PlantedAdapter().forward(scenes).class_logits.argmax(1)
    assert pred.tolist() == [s.option for s in scenes]


def test_read_block_options():
    assert PlantedAdapter(read_block=-1).read_block == 5
    assert PlantedAdapter(layers=8, read_block=-2).read_block == 6
    with pytest.raises(ValueError, match="read_block 0"):
        PlantedAdapter(read_block=0)
    with pytest.raises(ValueError, match="read_block 6"):
        PlantedAdapter(read_block=6)


def test_mix_zero_makes_processing_blocks_identities(scenes):
    ad = PlantedAdapter(mix=0.0)
    out = ad.forward(scenes[:2], ForwardRequest(layers=(1, 2, 3, 4)))
    torch.testing.assert_close(out.hidden[2], out.hidden[1], atol=0, rtol=0)  # block 1: processing
    torch.testing.assert_close(out.hidden[4], out.hidden[3], atol=0, rtol=0)  # block 3: processing


def _gap_without(ad, sample, token: int | None) -> float:
    """The logit gap of the plain float64 model with ``token`` deleted from the sequence."""
    model = ad._exact
    x, valid, _, _ = ad.encode([sample], model=model)
    if token is not None:
        keep = torch.arange(x.shape[1]) != token
        x, valid = x[:, keep], valid[:, keep]
    bias = ad.attention_bias(valid, x.dtype)
    logits = model.run(x, bias, torch.tensor([x.shape[1] - 1]))
    return float(logit_gap(logits, torch.tensor([sample.option]))[0])


@pytest.mark.parametrize("options", [{}, {"reference": "text", "decoy": True}])
def test_causal_effects_are_one_token_removal(options, scenes):
    """Each effect is gap(x) - gap(x with that vision token deleted from the sequence), computed
    here by really deleting it (a shorter sequence) instead of masking it."""
    ad = PlantedAdapter(**options)
    sample = scenes[1]
    (effect,) = ad.causal_effects([sample])
    lay = ad.forward([sample]).vision[0]
    assert effect.shape == lay.grid_hw and effect.dtype == torch.float64
    base = _gap_without(ad, sample, None)
    flat = effect.reshape(-1)
    # every cell of a coarse grid, so the test stays fast
    for j in range(0, lay.token_index.numel(), 5):
        expected = base - _gap_without(ad, sample, int(lay.token_index[j]))
        assert flat[j].item() == pytest.approx(expected, abs=1e-9), j


def test_causal_effects_sit_on_a_and_b(scenes):
    """Almost all of the absolute effect lies on cells that overlap A's or B's box (B's only when A
    comes from the text)."""
    for options, boxes in (({}, ("ref_box", "tgt_box")), ({"reference": "text"}, ("tgt_box",))):
        ad = PlantedAdapter(**options)
        effects = ad.causal_effects(scenes[:2])
        for s, e in zip(scenes[:2], effects):
            gh, gw = e.shape
            w, h = s.image_size
            xs = torch.arange(gw)[None, :] * (w / gw)
            ys = torch.arange(gh)[:, None] * (h / gh)
            on = torch.zeros(gh, gw, dtype=torch.bool)
            for name in boxes:
                b = getattr(s, name)
                on |= (xs < b.x1) & (xs + w / gw > b.x0) & (ys < b.y1) & (ys + h / gh > b.y0)
            a = e.abs()
            assert float(a[on].sum() / a.sum()) > 0.9, (options, s.id)


@pytest.mark.slow
def test_creg_run_scores_against_the_causal_effects(tmp_path):
    """``creg run --adapter planted`` shows the ground-truth columns; a run whose adapter provides no
    causal effects (here no model) has no such column and no number."""
    import json

    from click.testing import CliRunner

    from creg.cli import cli

    runs = {}
    for adapter in ("planted", "none"):
        out = tmp_path / adapter
        res = CliRunner().invoke(cli, ["run", "--adapter", adapter, "--source", "random_relevance,target_box",
                                       "--bench", "synthetic", "--n", "2", "--out", str(out), "--no-progress"])
        assert res.exit_code == 0, res.output
        runs[adapter] = (res.output, json.loads((out / "summary.json").read_text()))
    output, summary = runs["planted"]
    assert "causal mass" in output and "causal rank" in output and "DAE (A left out)" in output
    box = summary["sources"]["target_box"]
    assert 0 < box["causal_mass"] <= 1 and -1 <= box["causal_rank"] <= 1
    output, summary = runs["none"]
    assert "causal mass" not in output and "DAE (A left out)" in output
    assert summary["sources"]["target_box"]["causal_mass"] is None


def test_planted_declares_its_blocks_for_the_model_analyses():
    """creg analyze randomize / layers reach the hand-built blocks through model_parts (mask keyword ``bias``)."""
    from creg.explain.layers import layer_effects
    from creg.plugins.manager import get_plugins

    adapter = get_plugins().load("adapter", "planted")()
    parts = adapter.model_parts()
    assert len(parts.blocks) == adapter.num_layers and parts.mask_kwarg == "bias"
    bench = get_plugins().load("benchmark", "synthetic")(n=4, seed=0)
    samples = list(bench.samples())
    result = layer_effects(adapter, samples, bench.blank_sample)
    drops = [r["knockout_logp_drop"] for r in result["blocks"]]
    assert max(range(len(drops)), key=drops.__getitem__) == adapter.read_block  # the knock-out finds the planted read


def test_blank_images_give_no_position_prior():
    """With the objects removed nothing depends on where a cell lies (issue 18): the answer is the
    tie-break ("left" by TIE_LOGIT, all else 0) for every scene, Grad x Act of the gap at the vision
    activations is below CREG's min_signal floor, and the answer token's attention rollout is the same on every cell."""
    from creg.sources.attention_rollout import AttentionRollout
    from creg_planted.model import TIE_LOGIT

    bench = SyntheticBenchmark(n=8, seed=3)
    blanks = [bench.blank_sample(s) for s in bench.samples()]
    ad = PlantedAdapter()
    rollout = AttentionRollout()
    out = ad.forward(blanks, ForwardRequest(vision_activations=True), on_attention=rollout.update)
    expected = torch.tensor([[TIE_LOGIT, 0.0, 0.0, 0.0]]).expand(len(blanks), -1)
    torch.testing.assert_close(out.class_logits, expected, rtol=0, atol=0.01 * TIE_LOGIT)  # <ask>'s RMS is C0 to ~1 %
    assert bool((out.class_logits[:, 1:] == 0).all())
    gap = (out.class_logits[:, 0] - out.class_logits[:, 1:].max(1).values).sum()
    grads = torch.autograd.grad(gap, out.vision_activations)
    for g, a in zip(grads, out.vision_activations):  # Grad x Act per cell: under CREG's floor, 1e-4 |gap|
        assert float((g * a.detach()).sum(-1).abs().max()) < 1e-4 * TIE_LOGIT
    rows = rollout.rows(out.answer_index)
    for i, lay in enumerate(out.vision):
        cells = rows[i, lay.token_index]
        assert float(cells.min()) > 0 and float(cells.max() - cells.min()) <= 1e-4 * float(cells.max())  # float32 round-off
