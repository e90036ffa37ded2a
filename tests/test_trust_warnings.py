"""Results that mean nothing never pass silently (issue 20, item 1): n = 0 is an error, skipped
samples and benchmark shortfalls are warned about, accuracy whose CI includes chance is flagged,
a preset run outside its declared domain warns, and each source is tested against random_relevance
(table column, summary.json, warnings; terminal and API alike)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import creg
from coco_fixtures import FixtureImage, FixtureObject, pair_scenes, write_coco_folder
from creg.cli import cli
from creg.core.records import SampleRecord
from creg.config.presets import load_registry, model_domain
from creg.summary.aggregate import markdown_table, summarize
from creg.summary.versus_random import versus_random
from creg.summary.warnings import run_warnings
from creg.config.run_config import RunConfig
from creg.core.errors import RunError
from creg.execution.runner import NoSamples, Runner
from creg.plugins.metric import metric_registry

torch.set_num_threads(1)


def rec(sid, source, dae, relation="left", correct=None):
    return SampleRecord(sample_id=sid, source=source, relation=relation, correct=correct,
                        pred=None if correct is None else (relation if correct else "right"),
                        true_angle=0.0, compass=[1.0] + [0.0] * 7, peak_sector=0, peak_angle=0.0, sector_angle=0.0,
                        dae=dae, dae_sector=dae, ea=dae <= 45, flags=[])


def kinds(ws):
    return [w["kind"] for w in ws]


# -- n = 0 ------------------------------------------------------------------------------------------

def test_limit_0_is_an_error_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--adapter", "none", "--source", "oracle", "--limit", "0", "--out", str(out),
                                   "--no-progress"])
    assert res.exit_code == 2
    assert "--limit 0: a run needs at least one sample" in res.output
    assert not out.exists()
    with pytest.raises(RunError, match="--limit 0"):
        creg.run(adapter="none", sources=["oracle"], n=0, out=str(out))


def test_a_run_whose_images_are_all_missing_is_an_error_that_says_why(tmp_path):
    """VSR on a folder without its images: no sample, so no table; the message names the missing images."""
    data = write_coco_folder(tmp_path / "coco", [
        FixtureImage(262118, [FixtureObject("bed", (5, 40, 35, 35)), FixtureObject("bench", (80, 45, 30, 30))],
                     split="train2017", write_file=False)])
    (data / "train2017").mkdir(exist_ok=True)
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--adapter", "none", "--source", "oracle", "--bench", "vsr", "--data-dir",
                                   str(data), "--out", str(out), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "no sample was explained" in res.output and "missing image file" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_samples"] == 0 and "no_samples" in kinds(summary["warnings"])
    with pytest.raises(NoSamples, match="missing image file"):
        creg.run(adapter="none", sources=["oracle"], bench="vsr", data_dir=str(data), out=str(tmp_path / "api"))


# -- skipped samples and shortfalls are printed -------------------------------------------------------

def test_skipped_images_are_printed_in_the_table(tmp_path):
    scenes = pair_scenes(4, 4)
    for s in scenes[:2]:
        s.write_file = False
    data = write_coco_folder(tmp_path / "coco", scenes)
    res = CliRunner().invoke(cli, ["run", "--adapter", "none", "--source", "oracle", "--bench", "coco_pairs",
                                   "--data-dir", str(data), "--limit", "8", "--out", str(tmp_path / "run"),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "**Warnings**" in res.output and "asked for 8 samples, got 6" in res.output
    assert "missing image file 2" in res.output


def test_skipped_samples_without_a_shortfall_get_their_own_warning():
    records = [rec(f"s{i}", "creg", 10.0) for i in range(3)]
    summary = summarize(records, ["creg"], complete=True, skipped={"missing image file": 121})
    ws = run_warnings({"run": {"bench": "vsr"}, "benchmark": {"name": "vsr"}}, summary, records)
    skipped = next(w for w in ws if w["kind"] == "skipped")
    assert "121 samples skipped" in skipped["message"] and "missing image file 121" in skipped["message"]


# -- accuracy whose CI includes chance ---------------------------------------------------------------

def test_accuracy_whose_ci_includes_chance_is_warned_about():
    # 57 of 200 correct = 0.285: above 0.25, but its 95% CI reaches below it (the user guide's case)
    records = [rec(f"s{i}", "creg", 10.0, correct=i < 57) for i in range(200)]
    summary = summarize(records, ["creg"], complete=True)
    assert summary["vlm_accuracy"] == pytest.approx(0.285) and summary["vlm_accuracy_ci"][0] < 0.25
    summary["warnings"] = run_warnings({}, summary, records)
    w = next(w for w in summary["warnings"] if w["kind"] == "accuracy_at_chance")
    assert "includes chance" in w["message"] and "1/4 answers" in w["message"]
    line = next(x for x in markdown_table(summary).splitlines() if x.startswith("VLM accuracy"))
    assert "CI includes chance" in line
    clear = [rec(f"s{i}", "creg", 10.0, correct=i < 120) for i in range(200)]  # 0.6: CI far above chance
    assert "accuracy_at_chance" not in kinds(run_warnings({}, summarize(clear, ["creg"], complete=True), clear))


# -- a model outside its declared domain --------------------------------------------------------------

def test_the_toy_preset_declares_its_domain_and_a_run_elsewhere_warns():
    presets = load_registry()
    assert presets["qwen2vl-toy"].domain == ["synthetic"]
    assert model_domain("qwen2vl-toy", None, presets) == {"preset": "qwen2vl-toy", "benchmarks": ["synthetic"]}
    assert model_domain("qwen2vl-toy", "some/other-model", presets) is None  # --model replaces the toy
    assert model_domain("qwen2vl-7b", None, presets) is None  # declares none
    runner = Runner(RunConfig(adapter="qwen2vl-toy", sources=["random_relevance"], n=2), "unused")
    doc = runner.describe()
    assert doc["domain"]["benchmarks"] == ["synthetic"]
    records = [rec("a", "random_relevance", 10.0)]
    summary = summarize(records, ["random_relevance"], complete=True)
    assert "out_of_domain" not in kinds(run_warnings(doc, summary, records))  # synthetic: its own domain
    coco = {**doc, "benchmark": {"name": "coco_pairs"}}
    w = next(w for w in run_warnings(coco, summary, records) if w["kind"] == "out_of_domain")
    assert "qwen2vl-toy" in w["message"] and "coco_pairs" in w["message"] and "synthetic" in w["message"]


@pytest.mark.slow
def test_the_toy_on_coco_photos_warns_in_the_terminal(tmp_path):
    data = write_coco_folder(tmp_path / "coco", pair_scenes(2, 2))
    res = CliRunner().invoke(cli, ["run", "--source", "creg,random_relevance", "--bench", "coco_pairs", "--data-dir",
                                   str(data), "--limit", "4", "--out", str(tmp_path / "run"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "runs far outside its training domain" in res.output


# -- each source against random_relevance --------------------------------------------------------------

def _paired(n=40, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 180, n)
    records = []
    for i in range(n):
        records += [rec(f"s{i}", "good", float(noise[i] * 0.2)), rec(f"s{i}", "random_relevance", float(noise[i])),
                    rec(f"s{i}", "same", float(np.clip(noise[i] + rng.normal(0, 5), 0, 180)))]
    return records


def test_each_source_is_tested_against_random_relevance_on_shared_samples():
    records = _paired()
    tests = versus_random(records, metric_registry(), seed=0)
    assert set(tests) == {"good", "same"}
    good, same = tests["good"], tests["same"]
    expected = np.mean([r.dae for r in records if r.source == "good"]) - np.mean(
        [r.dae for r in records if r.source == "random_relevance"])
    assert good["n"] == 40 and good["diff"] == pytest.approx(expected)
    assert good["beats"] is True and good["ci"][1] < 0
    assert same["beats"] is False
    assert versus_random([r for r in records if r.source != "random_relevance"], metric_registry()) == {}


def test_the_table_summary_and_warnings_say_who_beats_random():
    records = _paired()
    summary = summarize(records, ["good", "same", "random_relevance"], complete=True)
    assert summary["sources"]["good"]["vs_random"]["beats"] is True
    assert "vs_random" not in summary["sources"]["random_relevance"]
    summary["warnings"] = run_warnings({}, summary, records)
    bad = [w for w in summary["warnings"] if w["kind"] == "not_better_than_random"]
    assert [w["source"] for w in bad] == ["same"]
    table = markdown_table(summary)
    assert "vs random_relevance ΔDAE [95% CI]" in table
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert rows["good"].rstrip(" |").endswith("✓") and rows["same"].rstrip(" |").endswith("✗")
    assert "same does not beat random_relevance" in table


def test_a_chance_control_gets_the_test_but_no_warning():
    records = [r.model_copy(update={"source": "random"}) if r.source == "same" else r for r in _paired()]
    summary = summarize(records, ["good", "random", "random_relevance"], complete=True)
    assert summary["sources"]["random"]["vs_random"]["beats"] is False
    assert "not_better_than_random" not in kinds(run_warnings({}, summary, records))


def test_the_api_returns_the_comparison_and_the_warnings(tmp_path):
    out = creg.run(adapter="none", sources=["oracle", "random_relevance", "random"], n=12, out=str(tmp_path / "r"))
    assert out["sources"]["oracle"]["vs_random"]["beats"] is True
    assert {"vs_random", "n"} <= set(out["sources"]["random"])
    assert isinstance(out["warnings"], list)
