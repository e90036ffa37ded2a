"""Issue 21, item 4: every option with a domain is checked before the run directory exists; model-
dependent checks run after the load but before config.json; a refused run leaves nothing behind."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from creg.cli import cli
from creg.core.errors import RunError
from creg.execution.runner import Runner, RunConfig

torch.set_num_threads(1)

RUN = ["run", "--adapter", "none", "--source", "oracle,random", "--n", "2", "--no-progress"]


def refused(args, out, *, contains: str) -> str:
    res = CliRunner().invoke(cli, args + ["--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [x for x in res.output.splitlines() if x.startswith(("creg:", "Error:"))]
    assert len(lines) == 1 and contains in lines[0], res.output
    assert not out.exists(), "a refused run left its directory behind"
    return lines[0]


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(2**70)])
def test_seed_out_of_range(tmp_path, seed):
    refused(RUN + ["--seed", seed], tmp_path / "run", contains="--seed")


@pytest.mark.parametrize("value", ["nan", "inf", "1e400", "-inf"])
def test_max_failures_not_finite(tmp_path, value):
    refused(RUN + ["--max-failures", value], tmp_path / "run", contains="--max-failures")


@pytest.mark.parametrize("prompt", ["{ref} {tgt} {0}", "{ref} {tgt} {x.y}", "{ref} {tgt} {", "{ref:>9} {tgt}"])
def test_prompt_fields_only_ref_and_tgt(tmp_path, prompt):
    refused(RUN + ["--prompt", prompt], tmp_path / "run", contains="prompt")


def test_literal_braces_in_a_prompt_still_work():
    from creg.core.prompts import render_prompt

    assert render_prompt("{{{ref}}} vs {tgt}", "a", "b") == "{a} vs b"


def test_ig_steps_has_an_upper_bound(tmp_path):
    refused(["run", "--adapter", "qwen2vl-toy", "--source", "integrated_gradients", "--n", "2", "--no-progress",
             "--source-opt", "integrated_gradients.steps=100000000"], tmp_path / "run", contains="steps")


@pytest.mark.parametrize("opt", ["max_pixels=-1", "min_pixels=0", "max_pixels=100000000000"])
def test_pixels_have_a_domain(tmp_path, opt):
    refused(["run", "--adapter", "qwen2vl-toy", "--source", "oracle", "--n", "2", "--no-progress",
             "--adapter-opt", opt], tmp_path / "run", contains="pixels")


def test_empty_out_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, RUN + ["--out", ""])
    assert res.exit_code == 2 and "--out: an empty path" in res.output
    assert not (tmp_path / "runs").exists()


def test_config_file_with_top_level_keys_and_a_run_table(tmp_path):
    f = tmp_path / "exp.toml"
    f.write_text('limit = 3\nsources = ["oracle"]\n[run]\nadapter = "none"\n')
    res = CliRunner().invoke(cli, ["run", "--config", str(f), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert "both at the top level (limit, sources) and in a [run] table" in res.output
    assert not (tmp_path / "run").exists()


def test_layer_out_of_range_fails_after_load_before_config_json(tmp_path, tiny_qwen2vl_dir):
    out = tmp_path / "run"
    cfg = RunConfig(adapter="qwen2vl", model=str(tiny_qwen2vl_dir), sources=["creg"], n=2,
                    source_options={"creg": {"layers": [-999]}})
    runner = Runner(cfg, out, progress=False, log=lambda _: None)
    with pytest.raises(RunError, match="layer -999 is out of range"):
        runner.run()
    assert not out.exists()
    # the corrected command then runs (no stored config.json to be "a different configuration")
    cfg.source_options = {"creg": {"layers": [-2]}}
    Runner(cfg, out, progress=False, log=lambda _: None).run()
    assert (out / "config.json").is_file()
