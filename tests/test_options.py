"""Options with a schema: bad values end in one line (exit 2, no traceback) before a run directory exists."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from pydantic import Field

from creg.plugins.benchmark import Benchmark
from creg.cli import cli
from creg.plugins.options import (Choice, Layers, OptionsError, PluginOptions, declares_options, describe_options,
                          validate_options)
from creg.config.run_config import RunConfig
from creg.execution.threads import default_threads
from creg.core.errors import RunError


class _Demo:
    class Options(PluginOptions):
        layers: Layers = Field((-2,), description="hidden-state indices")
        steps: int = Field(50, ge=1, description="integration steps")
        mode: Choice("max", "minmax") = "max"


def test_validate_options_converts_command_line_strings_and_json():
    opts = validate_options("source", "demo", _Demo, {"layers": "-2,-3", "steps": "8", "mode": "MinMax"})
    assert opts.layers == (-2, -3) and opts.steps == 8 and opts.mode == "minmax"
    assert validate_options("source", "demo", _Demo, {"layers": [-4, -4, -5]}).layers == (-4, -5)


@pytest.mark.parametrize("values, message", [
    ({"layers": "abc"}, "source 'demo': option 'layers': expected integers like -2,-3, got 'abc'"),
    ({"steps": 0}, "source 'demo': option 'steps': Input should be greater than or equal to 1, got 0"),
    ({"stepz": 3}, "source 'demo': unknown option 'stepz' (valid options: layers, steps, mode)"),
    ({"mode": "median"}, "source 'demo': option 'mode': Input should be 'max' or 'minmax', got 'median'"),
])
def test_bad_option_is_one_line_naming_plugin_and_field(values, message):
    with pytest.raises(OptionsError) as e:
        validate_options("source", "demo", _Demo, values)
    assert str(e.value) == message and "\n" not in str(e.value)


def test_declared_options_and_their_description():
    assert declares_options(_Demo) and not declares_options(Benchmark)
    rows = {r["name"]: r for r in describe_options(_Demo)}
    assert rows["steps"]["default"] == 50 and rows["steps"]["description"] == "integration steps"


def test_benchmark_options_are_validated_by_the_base_class():
    from creg_synthetic.benchmark import SyntheticBenchmark

    assert SyntheticBenchmark(width="64", height=64).size == (64, 64)
    with pytest.raises(OptionsError, match=r"benchmark 'synthetic': option 'width': .*less than or equal to 4096"):
        SyntheticBenchmark(width=100_000)
    with pytest.raises(OptionsError, match="aspect ratio"):
        SyntheticBenchmark(width=4096, height=32)
    with pytest.raises(OptionsError, match=r"n \(--limit\) must be an integer from 0 to 1000000"):
        SyntheticBenchmark(n=10**9)
    with pytest.raises(OptionsError, match="unknown option 'colour'"):
        SyntheticBenchmark(colour="red")


def test_a_benchmark_without_declared_options_keeps_working():
    class Old(Benchmark):  # a 0.1 benchmark: keyword arguments, no Options
        name = "old"

        def __init__(self, *, size: int = 3, **kw):
            super().__init__(**kw)
            self.size = size

        def samples(self):
            return iter(())

    assert Old(size=5, n=2).size == 5
    with pytest.raises(OptionsError, match="benchmark 'old': unknown option 'colour'"):
        Old(colour="red")


# -- the command line -----------------------------------------------------------------------------

BASE = ["run", "--adapter", "none", "--source", "oracle", "--limit", "4", "--no-progress"]


@pytest.mark.parametrize("extra, message", [
    (["--k", "0"], "Invalid value for '--k'"),
    (["--batch-size", "0"], "creg: --batch-size 0: expected a positive integer or 'auto'"),
    (["--batch-size", "5000"], "creg: --batch-size: Input should be less than or equal to 4096"),
    (["--limit", "-1"], "Invalid value for '--limit'"),
    (["--threads", "0"], "Invalid value for '--threads'"),
    (["--sigma-r", "0"], "Invalid value for '--sigma-r'"),
    (["--device", "bogus"], "creg: --device: unknown device 'bogus'"),
    (["--prompt", "Where is it?"], "creg: --prompt: unknown prompt 'Where is it?'"),
    (["--bench-opt", "min_ratio=abc"], "creg: benchmark 'synthetic': option 'min_ratio': Input should be a valid number"),
    (["--bench-opt", "width=10"], "creg: benchmark 'synthetic': option 'width': Input should be greater than or equal to 32"),
    (["--bench-opt", "nonsense"], "Invalid value for --bench-opt: 'nonsense': expected KEY=VALUE"),
    (["--source-opt", "oracle.x=1"], "creg: source 'oracle'"),
    (["--adapter-opt", "x=1"], "creg: --adapter-opt given but 'none' runs no model"),
    (["--limit", "2000000"], "creg: benchmark 'synthetic': n (--limit) must be an integer from 0 to 1000000"),
])
def test_bad_command_line_values_fail_in_one_line_before_the_run_directory_exists(tmp_path, extra, message):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, BASE + ["--out", str(out)] + extra)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output and not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit)
    assert not out.exists()


def test_bad_source_option_of_a_source_with_options_names_the_field(tmp_path):
    """`--source-opt creg.layers=abc` (the case of the issue) with a model: refused before loading it."""
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--adapter", "qwen2vl-toy", "--source", "creg", "--limit", "1",
                                   "--source-opt", "creg.layers=abc", "--out", str(out), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "source 'creg'" in res.output and "layers" in res.output and "abc" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()


def test_limit_and_its_short_alias_n_are_the_same_option(tmp_path):
    for flag in ("--limit", "--n"):
        out = tmp_path / flag.strip("-")
        res = CliRunner().invoke(cli, ["run", "--adapter", "none", "--source", "oracle", flag, "3", "--out", str(out),
                                       "--no-progress"])
        assert res.exit_code == 0, res.output
        assert json.loads((out / "config.json").read_text())["run"]["n"] == 3


def test_threads_are_recorded_in_the_run_configuration(tmp_path):
    out = tmp_path / "r"
    res = CliRunner().invoke(cli, BASE + ["--threads", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["run"]["threads"] == 2
    out2 = tmp_path / "r2"
    assert CliRunner().invoke(cli, BASE + ["--out", str(out2)]).exit_code == 0
    stored = json.loads((out2 / "config.json").read_text())["run"]["threads"]
    assert isinstance(stored, int) and 1 <= stored <= 4 or stored == int(__import__("os").environ.get("OMP_NUM_THREADS", 0))


def test_default_threads_never_exceed_four_or_idle_cores(monkeypatch):
    import os

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert default_threads() == 4
    monkeypatch.setattr(os, "getloadavg", lambda: (14.2, 0.0, 0.0))  # a busy machine: 2 idle cores
    assert default_threads() == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (40.0, 0.0, 0.0))
    assert default_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # 8 ranks of torchrun on this machine share its 16 cores
    assert default_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3


def test_run_config_names_the_flag_of_a_bad_field():
    with pytest.raises(RunError, match=r"^--k: Input should be greater than or equal to 1, got 0$"):
        RunConfig.checked(k=0)
    with pytest.raises(RunError, match=r"--source: sources named more than once: oracle"):
        RunConfig.checked(sources=["oracle", "oracle"])


def test_a_registry_whose_presets_is_not_a_table_fails_in_one_line(tmp_path):
    reg = tmp_path / "reg.toml"
    reg.write_text("presets = 5\n")
    out = tmp_path / "run"
    for args in (["list", "--registry", str(reg)], BASE + ["--registry", str(reg), "--out", str(out)]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2, res.output
        assert "'presets' must be a table" in res.output and "Traceback" not in res.output
    assert not out.exists()
    reg.write_text('[presets.x]\nadapter = "qwen2vl"\nmodel = "m"\ndevice = "gpu"\n')
    res = CliRunner().invoke(cli, ["list", "--registry", str(reg)])
    assert res.exit_code == 2 and "preset 'x': device: unknown device 'gpu'" in res.output


def test_explain_and_analyze_share_the_common_options():
    from creg.cli.analyze import ablation_cmd
    from creg.cli.explain import explain_cmd
    from creg.cli.run import run_cmd

    def names(cmd):
        return {o for p in cmd.params for o in p.opts}

    common = {"--adapter", "--model", "--dtype", "--device", "--prompt", "--adapter-opt", "--registry", "--source-opt",
              "--threads"}
    for cmd in (run_cmd, explain_cmd, ablation_cmd):
        assert common <= names(cmd), cmd.name
    assert {"--limit", "--n", "--bench-opt", "--batch-size"} <= names(run_cmd) & names(ablation_cmd)


def test_adapter_options_are_validated_against_the_adapter_options(monkeypatch):
    """--adapter-opt and a preset's options meet the adapter's Options before the model loads."""
    from creg.plugins.adapter import VLMAdapter
    from creg.plugins.manager import discover
    from creg.config.presets import Preset
    from creg.config.resolve import resolve_adapter

    class Opted(VLMAdapter):
        class Options(PluginOptions):
            max_pixels: int = Field(1024, ge=1, description="pixel budget")

    import types

    plugin = types.ModuleType("opted_plugin")
    from creg import hookimpl

    @hookimpl
    def register_adapters(register):
        register("opted", Opted, description="test adapter")

    plugin.register_adapters = register_adapters
    plugins = discover()
    plugins.add_module(plugin)
    presets = {"p": Preset(adapter="opted", model="m", options={"max_pixels": 64})}
    cls, cfg = resolve_adapter(RunConfig(adapter="p"), plugins, presets)
    assert cls is Opted and cfg.options.max_pixels == 64
    _, cfg = resolve_adapter(RunConfig(adapter="p", adapter_options={"max_pixels": "128"}), plugins, presets)
    assert cfg.options.max_pixels == 128
    with pytest.raises(OptionsError, match=r"^adapter 'opted': option 'max_pixels': .*greater than or equal to 1, got 0$"):
        resolve_adapter(RunConfig(adapter="p", adapter_options={"max_pixels": 0}), plugins, presets)
    with pytest.raises(OptionsError, match=r"unknown option 'min_pixel'"):
        resolve_adapter(RunConfig(adapter="p", adapter_options={"min_pixel": 1}), plugins, presets)


def test_explain_takes_adapter_options_and_threads_and_checks_them(tmp_path):
    img = tmp_path / "i.png"
    __import__("PIL.Image").Image.new("RGB", (64, 64)).save(img)
    base = ["explain", "--image", str(img), "--ref", "a", "--ref-box", "0,0,10,10", "--tgt", "b", "--tgt-box", "40,0,50,10",
            "--source", "oracle", "--threads", "1"]
    assert CliRunner().invoke(cli, base + ["--adapter", "none"]).exit_code == 0
    res = CliRunner().invoke(cli, base + ["--adapter", "none", "--adapter-opt", "max_pixels=5"])
    assert res.exit_code == 2 and "--adapter-opt given but 'none' runs no model" in res.output
    res = CliRunner().invoke(cli, base + ["--adapter", "none", "--k", "0"])
    assert res.exit_code == 2 and "Invalid value for '--k'" in res.output
    res = CliRunner().invoke(cli, base[:9] + ["--tgt-box", "50,0,40,10", "--adapter", "none"])
    assert res.exit_code == 2 and "tgt box: x0 must be < x1, got x0=50.0, x1=40.0" in res.output
    assert len(res.output.strip().splitlines()) == 1
