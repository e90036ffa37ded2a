"""The click driver: `creg list`, `creg run` with geometry-only sources (no model needed)."""

import json

import pytest
from click.testing import CliRunner

from creg.cli import cli


@pytest.fixture
def runner():
    return CliRunner()


def test_list_shows_presets_plugins_and_their_packages(runner):
    res = runner.invoke(cli, ["list"])
    assert res.exit_code == 0, res.output
    assert "qwen2vl-7b" in res.output and "Qwen/Qwen2-VL-7B-Instruct" in res.output
    assert "oracle" in res.output and "synthetic" in res.output
    assert "creg 0.1.0" in res.output  # which distribution provides each plugin


@pytest.mark.slow
def test_run_oracle_and_random_end_to_end(runner, tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(cli, ["run", "--adapter", "none", "--source", "oracle,random", "--bench", "synthetic",
                              "--n", "400", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "| oracle | 400 | 0.0 [0, 0] | 1.000 [1.00, 1.00]" in res.output
    summary = json.loads((out / "summary.json").read_text())
    # the documented contract
    assert summary["vlm_accuracy"] is None
    for name in ("oracle", "random"):
        s = summary["sources"][name]
        assert {"n", "dae", "dae_ci", "ea", "ea_ci"} <= set(s) and s["n"] == 400
    assert summary["sources"]["oracle"]["dae"] < 1e-9 and summary["sources"]["oracle"]["ea"] == 1.0
    # random within 3 standard errors of chance for n = 400 (see tests/test_metrics.py)
    assert abs(summary["sources"]["random"]["dae"] - 90) < 8
    assert abs(summary["sources"]["random"]["ea"] - 0.25) < 0.065
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 800
    rec = json.loads(lines[0])
    assert len(rec["compass"]) == 8 and rec["source"] == "oracle"
    assert json.loads((out / "config.json").read_text())["run"]["n"] == 400
    assert len((out / "samples.jsonl").read_text().splitlines()) == 400
    assert (out / "table.md").read_text().startswith("### synthetic")


def test_same_command_again_resumes_and_processes_nothing(runner, tmp_path):
    args = ["run", "--adapter", "none", "--source", "oracle", "--n", "8", "--out", str(tmp_path / "r"), "--no-progress"]
    assert runner.invoke(cli, args).exit_code == 0
    res = runner.invoke(cli, args)
    assert res.exit_code == 0 and "resuming" in res.output
    assert len((tmp_path / "r" / "records.jsonl").read_text().splitlines()) == 8


def test_different_config_in_the_same_out_dir_is_refused(runner, tmp_path):
    out = str(tmp_path / "r")
    assert runner.invoke(cli, ["run", "--adapter", "none", "--source", "oracle", "--n", "4", "--out", out, "--no-progress"]).exit_code == 0
    res = runner.invoke(cli, ["run", "--adapter", "none", "--source", "oracle", "--n", "4", "--k", "4", "--out", out, "--no-progress"])
    assert res.exit_code == 2 and "different configuration" in res.output and "k: 8 -> 4" in res.output
    res = runner.invoke(cli, ["run", "--adapter", "none", "--source", "oracle", "--n", "4", "--k", "4", "--out", out,
                              "--no-progress", "--overwrite"])
    assert res.exit_code == 0


@pytest.mark.parametrize("args,msg", [
    (["--source", "oracel"], "unknown source 'oracel'; did you mean oracle"),
    (["--source", "oracle", "--bench", "synthtic"], "unknown benchmark 'synthtic'; did you mean synthetic"),
    (["--source", "oracle", "--adapter", "qwen2vl-8b"], "unknown adapter 'qwen2vl-8b'; did you mean"),
])
def test_unknown_names_give_one_line_with_the_closest_valid_names(runner, tmp_path, args, msg):
    res = runner.invoke(cli, ["run", "--n", "4", "--out", str(tmp_path / "r"), "--no-progress", "--adapter", "none", *args])
    assert res.exit_code == 2
    assert msg in res.output
    assert len([l for l in res.output.splitlines() if l.startswith("creg:")]) == 1


def test_options_for_a_source_that_is_not_run_fail_clearly(runner, tmp_path):
    res = runner.invoke(cli, ["run", "--adapter", "none", "--source", "oracle", "--source-opt", "random.x=1",
                              "--n", "4", "--out", str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code == 2 and "not in --source" in res.output
