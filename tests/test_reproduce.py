"""``creg reproduce`` (issue 12 item 6): the plan, the paper's numbers as data, and the protocol end to
end on the toy model with a few samples."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from creg.report import published as paper
from creg.cli import cli
from creg.experiments.reproduce import ABLATION_N, PROMPTS_N, QUICK_SIZES, TABLE1_N, plan_reproduction
from creg.core.errors import RunError
from creg.store import RunStore

torch.set_num_threads(1)


def test_published_numbers_carry_their_provenance_and_are_unique():
    creg_coco = paper.one(table="Table 1", benchmark="coco_pairs", source="creg", metric="dae")
    assert (creg_coco.value, creg_coco.ci, creg_coco.n, creg_coco.row) == (55.5, (50, 61), 300, "CREG (pred)")
    assert creg_coco.reading == "dae_sector"  # Eq. 6: the sector centre
    assert paper.one(table="Table 1", benchmark="vsr", source="oracle", metric="dae").reading == "dae"
    assert paper.one(table="Table 4", benchmark="vsr", metric="cos").value == 0.417
    assert paper.one(table="Table 5", variant="no_contrastive", metric="dae").value == 82.3
    assert paper.one(table="Table 6", variant="B", metric="vlm_accuracy").value == 0.367
    assert paper.one(table="§6.1", metric="flip_r").value == -0.065
    assert paper.one(table="Table 3", benchmark="coco_pairs", source="creg", metric="dae", subset="incorrect").value == 61.7
    # every (table, benchmark, row, column) names one number
    keys = [(p.table, p.benchmark, p.row, p.column) for p in paper.ALL]
    assert len(keys) == len(set(keys))
    # 8 methods x 2 benchmarks x (DAE, EA) in Table 1
    assert len(paper.TABLE1) == 32


def test_without_data_the_paper_benchmarks_are_skipped_and_synthetic_stands_in(tmp_path):
    plan = plan_reproduction(tmp_path, adapter="qwen2vl-toy")
    assert plan.benchmarks == ["synthetic"]
    assert any("vsr: skipped" in n for n in plan.notes) and any("coco_pairs: skipped" in n for n in plan.notes)
    assert any("synthetic stands in" in n for n in plan.notes)
    names = [s.name for s in plan.steps]
    assert names == ["synthetic/table1", "synthetic/cos_grey", "synthetic/cos_blur", "synthetic/cos_patch_drop",
                     "ablation", "prompts", "synthetic/cos_grey/flip"]
    # generated scenes only: the quick sizes, Table 1 on creg run's default sample count and sources
    assert any("quick sizes" in n for n in plan.notes)
    t1 = plan.steps[0].configs[""]
    assert not t1.cos and t1.n == QUICK_SIZES.table1 == 200 and "creg" in t1.sources and "oracle" in t1.sources
    # ... so that its samples and records are creg run's default run's (same n, seed, sources, batch size)
    from creg.config.defaults import DEFAULT_SOURCES

    assert t1.sources == list(DEFAULT_SOURCES) and t1.seed == 0 and t1.batch_size == 1
    cos = [s.configs[""] for s in plan.steps[1:4]]
    assert [c.cos_op for c in cos] == ["grey", "blur", "patch_drop"] and all(c.cos for c in cos)
    # every operator on the same samples and sources: the rows of Table 4 differ only in the operator
    assert {c.n for c in cos} == {QUICK_SIZES.cos} and {tuple(c.sources) for c in cos} == {("creg", "attention_rollout", "random_relevance")}
    assert set(plan.steps[4].configs) == {"default", "k4", "single_layer", "no_contrastive"}
    assert plan.steps[4].configs["k4"].k == 4 and plan.steps[4].configs["default"].n == ABLATION_N
    assert [c.prompt for c in plan.steps[5].configs.values()] == ["A", "B", "C"]
    assert plan.steps[5].configs["A"].n == PROMPTS_N


def test_sizes_paper_gives_the_paper_counts_on_synthetic_and_limit_caps_them(tmp_path):
    plan = plan_reproduction(tmp_path, adapter="qwen2vl-toy", sizes="paper")
    ns = {s.name: {c.n for c in s.configs.values()} for s in plan.steps if s.configs}
    assert ns["synthetic/table1"] == ns["synthetic/cos_grey"] == {TABLE1_N["vsr"]}
    assert not any("quick sizes" in n for n in plan.notes)
    capped = plan_reproduction(tmp_path, adapter="qwen2vl-toy", limit=50)
    ns = {s.name: {c.n for c in s.configs.values()} for s in capped.steps if s.configs}
    assert ns["synthetic/table1"] == {50} and ns["synthetic/cos_blur"] == {50} and ns["prompts"] == {PROMPTS_N}
    with pytest.raises(RunError):
        plan_reproduction(tmp_path, adapter="qwen2vl-toy", sizes="huge")


def test_with_data_both_paper_benchmarks_run_and_limit_caps_every_step(tmp_path):
    plan = plan_reproduction(tmp_path, adapter="qwen2vl-toy", data_dir=str(tmp_path), limit=40)
    assert plan.benchmarks == ["vsr", "coco_pairs"] and plan.notes == []
    ns = {s.name: {c.n for c in s.configs.values()} for s in plan.steps if s.configs}
    assert ns["vsr/table1"] == {40} and ns["coco_pairs/table1"] == {40} and ns["ablation"] == {40} and ns["prompts"] == {30}
    assert {c.bench for c in plan.steps[-3].configs.values()} == {"vsr"}  # Table 5 on VSR, as in the paper
    # a dataset: the paper's sizes, COS on Table 1's samples
    paper_plan = plan_reproduction(tmp_path, adapter="qwen2vl-toy", data_dir=str(tmp_path))
    ns = {s.name: {c.n for c in s.configs.values()} for s in paper_plan.steps if s.configs}
    assert ns["vsr/table1"] == ns["vsr/cos_patch_drop"] == {240} and ns["coco_pairs/cos_grey"] == {300}
    assert ns["ablation"] == {ABLATION_N} and ns["prompts"] == {PROMPTS_N}
    with pytest.raises(RunError):
        plan_reproduction(tmp_path, adapter="qwen2vl-toy", limit=0)


def test_a_bad_adapter_is_one_line_exit_2(tmp_path):
    res = CliRunner().invoke(cli, ["reproduce", "--adapter", "no-such-model", "--bench", "synthetic", "--limit", "1",
                                   "--out", str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output


@pytest.mark.slow
def test_reproduce_end_to_end_on_the_toy(tmp_path):
    out = tmp_path / "repro"
    res = CliRunner().invoke(cli, ["reproduce", "--bench", "synthetic", "--limit", "2",  # the toy is the default adapter
                                   "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    # every step is an ordinary run directory, readable through the run store
    for name in ("synthetic/table1", "synthetic/cos_grey", "synthetic/cos_blur", "synthetic/cos_patch_drop", "ablation/default", "ablation/k4",
                 "ablation/single_layer", "ablation/no_contrastive", "prompts/A", "prompts/B", "prompts/C"):
        store = RunStore.read(out / name)
        assert store.summary()["complete"] and store.summary()["n_samples"] == 2, name
        assert "warnings" in store.summary()
    flip = RunStore.read(out / "synthetic/cos_grey").sub("flip")
    assert flip is not None and flip.config["run"]["cos"] is False and flip.summary()["n_samples"] == 2
    ops = {RunStore.read(out / f"synthetic/{n}").config["run"]["cos_op"] for n in ("cos_grey", "cos_blur", "cos_patch_drop")}
    assert ops == {"grey", "blur", "patch_drop"}
    text = (out / "report.md").read_text()
    for heading in ("Table 1", "paired tests, CREG against every other source", "causal occlusion (Table 4)",
                    "correct vs incorrect (Table 3)", "per class",
                    "Table 5: ablation", "Table 6: prompt sweep", "Flip equivariance"):
        assert heading in text, heading
    assert "synthetic stands in" not in text  # --bench synthetic was asked for, nothing substituted
    report = json.loads((out / "report.json").read_text())
    t1 = {r["source"]: r for r in report["tables"]["synthetic/table1"]}
    assert t1["creg"]["paper_dae"] == 64.8 and t1["creg"]["paper_dae_reading"] == "dae_sector"  # VSR, for orientation
    stored = RunStore.read(out / "synthetic/table1").summary()["sources"]["creg"]
    assert t1["creg"]["dae_sector"] == stored["dae_sector"]
    cos = report["tables"]["synthetic/cos"]
    assert {r["op"] for r in cos} == {"grey", "blur", "patch_drop"}
    assert {(r["op"], r["source"]) for r in cos} == {(op, s) for op in ("grey", "blur", "patch_drop")
                                                     for s in ("creg", "attention_rollout", "random_relevance")}
    assert all(r["area_matched"] is not None for r in cos)  # the area-matched control beside every reading
    # the paired tests: every other source of Table 1 against CREG, Holm-adjusted, on the shared samples
    paired = report["tables"]["synthetic/paired"]
    others = set(t1) - {"creg"}
    assert {t["a"] for t in paired} == others and {t["b"] for t in paired} == {"creg"}
    dae = {t["a"]: t for t in paired if t["metric"] == "dae"}
    assert dae["creg_gt"]["n"] == 2 and all(t["p_holm"] >= t["p"] for t in paired if t.get("n"))
    # the per-class table has a row for every source
    assert set(report["tables"]["synthetic/per_class"]["sources"]) == set(t1)
    assert set(report["tables"]["ablation"]) == {"default", "k4", "single_layer", "no_contrastive"}
    assert set(report["tables"]["flip"]) == {"creg", "attention_rollout", "random_relevance"}
    assert report["tables"]["flip"]["creg"]["n"] == 2
    assert report["tables"]["flip_answers"]["n"] == 2 and "The model's answers: on" in text


def test_answer_flip_equivariance_counts_mirrored_answers():
    from types import SimpleNamespace as R

    from creg.report.reproduction import answer_flip_equivariance

    original = [R(sample_id="a", pred="left"), R(sample_id="a", pred="left"),  # two sources, one answer
                R(sample_id="b", pred="above"), R(sample_id="c", pred="right"), R(sample_id="d", pred=None)]
    flipped = [R(sample_id="a", pred="right"), R(sample_id="b", pred="below"), R(sample_id="c", pred="left"),
               R(sample_id="d", pred="left"), R(sample_id="e", pred="left")]
    # a: left -> right (mirrored), b: above -> below (not), c: right -> left (mirrored); d has no answer, e no original
    assert answer_flip_equivariance(original, flipped) == {"n": 3, "equivariant": 2, "share": 2 / 3}
    assert answer_flip_equivariance([], flipped) == {"n": 0, "equivariant": 0, "share": None}


def test_reproduce_takes_the_placement_flags_of_creg_run(tmp_path):
    """--device-map / --max-memory reach every run of the plan; a bad combination is one line, exit 2."""
    from click.testing import CliRunner

    from creg.cli import cli
    from creg.experiments.reproduce import plan_reproduction

    bad = CliRunner().invoke(cli, ["reproduce", "--max-memory", "cpu=1GiB", "--dry-run", "--out", str(tmp_path / "r")])
    assert bad.exit_code == 2 and "--max-memory" in bad.output and "Traceback" not in bad.output
    ok = CliRunner().invoke(cli, ["reproduce", "--device-map", "auto", "--max-memory", "cpu=1GiB", "--dry-run",
                                  "--limit", "1", "--out", str(tmp_path / "r")])
    assert ok.exit_code == 0, ok.output
    plan = plan_reproduction(tmp_path / "p", adapter="qwen2vl-toy", limit=1, device_map="auto", max_memory={"cpu": "1GiB"})
    configs = [c for step in plan.steps for c in step.configs.values()]
    assert configs and all(c.device_map == "auto" and c.max_memory == {"cpu": "1GiB"} for c in configs)
