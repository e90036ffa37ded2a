"""The paper's analyses over records: flip mirror mapping (§6.1), Pearson, per class (Fig. 4),
Table 3 split, paired tests, Table 5 / 6 configurations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from creg.summary import breakdowns

from creg.summary import paired_tests

from creg.experiments import variants
from creg.core.compass import project_to_compass, sector_centers
from creg.core.records import SampleRecord
from creg.execution.runner import Runner, RunConfig

torch.set_num_threads(1)


def rec(sid, source, relation="left", dae=10.0, correct=None, compass=None, peak=0):
    compass = compass if compass is not None else [1.0] + [0.0] * 7
    return SampleRecord(sample_id=sid, source=source, relation=relation, correct=correct,
                        pred=None if correct is None else (relation if correct else "right"),
                        true_angle=0.0, compass=compass, peak_sector=peak, peak_angle=0.0, sector_angle=0.0,
                        dae=dae, dae_sector=dae, ea=None if dae is None else dae <= 45)


def test_mirror_mapping_is_the_horizontal_flip_of_sector_centres():
    assert breakdowns.mirror_sectors(8).tolist() == [4, 3, 2, 1, 0, 7, 6, 5]  # E<->W, NE<->NW, N, S fixed
    assert breakdowns.mirror_sectors(4).tolist() == [2, 1, 0, 3]
    for k in (4, 8, 12):
        m = breakdowns.mirror_sectors(k)
        assert (m[m] == np.arange(k)).all()  # an involution
        c = sector_centers(k).numpy()
        np.testing.assert_allclose((180.0 - c) % 360.0, c[m])  # theta -> 180 - theta
    with pytest.raises(ValueError):
        breakdowns.mirror_sectors(5)
    p = np.arange(8.0)
    assert breakdowns.mirror_compass(p).tolist() == [4, 3, 2, 1, 0, 7, 6, 5]


def test_flipped_projection_mirrors_the_compass():
    # a relevance blob up-right of A; its mirror image is up-left of the mirrored A
    from creg.core.sample import Box

    w = 200
    a, b = Box(x0=40, y0=120, x1=80, y1=160), Box(x0=120, y0=40, x1=160, y1=80)
    fa, fb = Box(x0=w - 80, y0=120, x1=w - 40, y1=160), Box(x0=w - 160, y0=40, x1=w - 120, y1=80)
    rel = torch.zeros(10, 10, dtype=torch.float64)
    rel[2, 7], rel[3, 6], rel[5, 8] = 1.0, 0.5, 0.25
    p = project_to_compass(rel, a, b, (w, 200)).probs.numpy()
    q = project_to_compass(rel.flip(1), fa, fb, (w, 200)).probs.numpy()
    np.testing.assert_allclose(breakdowns.mirror_compass(q), p, atol=1e-12)
    assert breakdowns.pearson_rows(p[None], breakdowns.mirror_compass(q)[None])[0] == pytest.approx(1.0)


def test_pearson_rows_matches_numpy_and_flags_constant_rows():
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 8)), rng.random((5, 8))
    r = breakdowns.pearson_rows(a, b)
    np.testing.assert_allclose(r, [np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)])
    assert np.isnan(breakdowns.pearson_rows(np.full(8, 0.125), a[0]))


def test_flip_equivariance_from_records():
    p = [0.5, 0.3, 0.2, 0, 0, 0, 0, 0]
    mirrored = breakdowns.mirror_compass(p).tolist()
    orig = [rec("s1", "x", compass=p, peak=0), rec("s2", "x", compass=[0.125] * 8), rec("s1", "y", compass=p, peak=0)]
    flipped = [rec("s1", "x", compass=mirrored, peak=4), rec("s2", "x", compass=[0.125] * 8, peak=3),
               rec("s1", "y", compass=p, peak=0)]  # y ignores the flip: not equivariant
    out = breakdowns.flip_equivariance(orig, flipped)
    assert out["x"]["r_mean"] == pytest.approx(1.0) and out["x"]["n_constant"] == 1 and out["x"]["n"] == 2
    assert out["y"]["r_mean"] < 0.5 and out["y"]["peak_agreement"] == 0.0
    assert out["x"]["peak_agreement"] == 0.5  # s1 agrees (4 -> 0); s2's uniform peak 3 mirrors to 1 != 0


def test_flip_run_oracle_is_equivariant_random_is_not(tmp_path):
    run = tmp_path / "run"
    Runner(RunConfig(sources=["oracle", "random"], n=12), run, progress=False, log=lambda m: None).run()
    variants.run_flipped(run, progress=False, log=lambda m: None)
    flipped = breakdowns.load_records(run / "flip")
    orig = {(r.sample_id, r.source): r for r in breakdowns.load_records(run)}
    assert len(flipped) == 24
    for r in flipped:  # the flipped sample's truth is the mirrored truth
        assert r.true_angle == pytest.approx((180.0 - orig[(r.sample_id, r.source)].true_angle) % 360.0)
        assert r.relation == breakdowns.FLIPPED_RELATION[orig[(r.sample_id, r.source)].relation]
    out = breakdowns.flip_equivariance(list(orig.values()), flipped)
    assert out["oracle"]["r_mean"] == pytest.approx(1.0) and out["oracle"]["peak_agreement"] == 1.0
    assert out["random"]["peak_agreement"] < 0.5  # seeded by sample id: the same direction, not the mirrored one
    assert json.loads((run / "flip" / "config.json").read_text())["benchmark"]["flipped"] is True


def test_per_class_accuracy_and_dae():
    recs = [rec("a", "s", "left", 10.0, True), rec("b", "s", "left", 50.0, False), rec("c", "s", "below", 170.0, False),
            rec("a", "t", "left", 90.0, True), rec("b", "t", "left", 0.0, False), rec("c", "t", "below", None, False)]
    pc = breakdowns.per_class(recs)
    assert pc["accuracy"]["left"] == {"n": 2, "accuracy": 0.5}  # one answer per sample, not per source
    assert pc["accuracy"]["below"]["accuracy"] == 0.0 and pc["accuracy"]["above"]["accuracy"] is None
    left = pc["sources"]["s"]["left"]
    assert {k: left[k] for k in ("n", "dae", "ea")} == {"n": 2, "dae": 30.0, "ea": 0.5}
    assert left["dae_ci"] == [10.0, 50.0] and left["ea_ci"] == [0.0, 1.0]  # 95% bootstrap CIs per class
    assert pc["sources"]["t"]["below"]["dae"] is None
    assert pc["chance"]["accuracy"] == 0.25 and pc["chance"]["dae"] == pytest.approx(90.0, abs=0.1)
    assert breakdowns.per_class([rec("a", "s")])["accuracy"] is None  # no model, no accuracy


def test_correctness_split_table3():
    recs = [rec("a", "creg", dae=10.0, correct=True), rec("a", "creg_gt", dae=10.0, correct=True),
            rec("b", "creg", dae=40.0, correct=False), rec("b", "creg_gt", dae=100.0, correct=False)]
    t = breakdowns.correctness_split(recs)
    assert t["rows"]["correct"]["gt"]["dae"] == t["rows"]["correct"]["pred"]["dae"] == 10.0
    assert t["rows"]["incorrect"]["gt"]["dae"] == 100.0 and t["rows"]["incorrect"]["pred"]["ea"] == 1.0
    assert t["rows"]["all"]["gt"]["dae"] == 55.0 and t["vlm_accuracy"] == 0.5
    assert breakdowns.correctness_split([r for r in recs if r.source == "creg"]) is None


def test_paired_tests_and_holm():
    rng = np.random.default_rng(1)
    base = rng.uniform(20, 160, 40)
    recs = [rec(f"s{i}", "good", dae=d - 15) for i, d in enumerate(base)]
    recs += [rec(f"s{i}", "bad", dae=d) for i, d in enumerate(base)]
    recs += [rec(f"s{i}", "same", dae=d) for i, d in enumerate(base)]
    tests = {(t["a"], t["b"], t["metric"]): t for t in paired_tests.pairwise_tests(recs, n_boot=2000)}
    gb = tests[("good", "bad", "dae")]
    assert gb["diff"] == pytest.approx(-15.0) and gb["p"] < 0.001 and gb["n"] == 40
    bs = tests[("bad", "same", "dae")]
    assert bs["diff"] == 0.0 and bs["p"] == 1.0 and bs["p_holm"] == 1.0
    assert gb["p_holm"] >= gb["p"]
    np.testing.assert_allclose(paired_tests.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])


def test_ablation_and_prompt_configs():
    base = RunConfig(adapter="x", sources=["creg", "random"], source_options={"creg": {"normalize": "minmax"}}, cos=True)
    cfg = variants.ablation_configs(base)
    assert list(cfg) == ["default", "k4", "single_layer", "no_contrastive"]
    assert all(c.sources == ["creg"] and not c.cos for c in cfg.values())
    assert cfg["k4"].k == 4 and cfg["default"].k == 8
    assert cfg["single_layer"].source_options["creg"] == {"normalize": "minmax", "layers": [-2]}
    assert cfg["no_contrastive"].source_options["creg"] == {"normalize": "minmax", "contrastive": False}
    prompts = variants.prompt_configs(base)
    assert [c.prompt for c in prompts.values()] == ["A", "B", "C"]
    rows = breakdowns.variants_table({"A": {"sources": {"creg": {"n": 3, "dae": 50.0, "ea": 0.5}}, "vlm_accuracy": 0.6}}, accuracy=True)
    assert rows["A"] == {"label": "A", "n": 3, "dae": 50.0, "ea": 0.5, "vlm_accuracy": 0.6}
