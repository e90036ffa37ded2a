"""Every entry point parses what it is given through the one resolver (creg.config.resolve.resolve_run_config)
into the same RunConfig and the same adapter: ``creg run`` arguments, ``creg run --config FILE``, ``creg.run``
keywords, ``creg.load``, ``creg explain`` and ``creg reproduce``'s plan; and their defaults are RunConfig's
fields' (creg.config.defaults)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

import creg
import creg.api
import creg.execution.runner
import creg.experiments.reproduce
from creg.api import RUN_DEFAULTS, RUN_OPTIONS
from creg.cli import cli
from creg.cli.run import run_cmd
from creg.config.defaults import DEFAULT_MODEL, DEFAULT_SOURCES, default_adapter, field_default, run_defaults
from creg.config.presets import load_registry
from creg.config.resolve import choose_adapter, infer_adapter, resolve_adapter, resolve_run_config
from creg.config.run_config import RunConfig
from creg.core.errors import RunError
from creg.plugins.manager import get_plugins

#: ``creg run`` turns these parameters into RunConfig fields of another name.
CLI_FIELDS = {"sources": "sources", "registries": "registry", "source_opt": "source_options",
              "bench_opt": "bench_options", "adapter_opt": "adapter_options", "controls": "controls"}


class Captured(Exception):
    """Raised by the spies below once they hold the configuration an entry point built."""

    def __init__(self, config: RunConfig):
        super().__init__("captured")
        self.config = config


class _SpyRunner:
    def __init__(self, config, out, **kw):
        raise Captured(config)


@pytest.fixture
def spies(monkeypatch):
    """The RunConfig each entry point hands on: the Runner (creg run, creg.run), load_config (creg.load,
    creg explain), and the plans of creg reproduce."""
    monkeypatch.delenv("CREG_DATA_DIR", raising=False)
    monkeypatch.delenv("CREG_REGISTRY", raising=False)
    monkeypatch.setattr(creg.execution.runner, "Runner", _SpyRunner)
    monkeypatch.setattr(creg.api, "Runner", _SpyRunner)

    def load_config(config, **kw):
        raise Captured(config)

    monkeypatch.setattr(creg.api, "load_config", load_config)
    plans = []
    real_plan = creg.experiments.reproduce.plan_reproduction

    def plan(*a, **kw):
        plans.append(real_plan(*a, **kw))
        return plans[-1]

    monkeypatch.setattr(creg.experiments.reproduce, "plan_reproduction", plan)
    return plans


def cli_config(args: list[str]) -> RunConfig:
    res = CliRunner().invoke(cli, args)
    assert isinstance(res.exception, Captured), (res.output, res.exception)
    return res.exception.config


def api_config(fn, *a, **kw) -> RunConfig:
    with pytest.raises(Captured) as e:
        fn(*a, **kw)
    return e.value.config


def same(a: RunConfig, b: RunConfig) -> None:
    """Equal, apart from the thread count (a run fills in the number it used, creg.execution.threads)."""
    assert a.model_dump(exclude={"threads"}) == b.model_dump(exclude={"threads"})


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """A local model folder whose config.json names its model_type (no weights: nothing here loads it)."""
    d = tmp_path / "my-model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    return d


def test_the_defaults_are_run_configs(spies):
    presets = load_registry()
    expected = RunConfig(adapter=default_adapter(presets), sources=list(DEFAULT_SOURCES))
    for name, field in RunConfig.model_fields.items():  # everything but the model and the sources is RunConfig's own
        if name not in ("adapter", "sources"):
            assert getattr(expected, name) == field.get_default(call_default_factory=True), name
    same(cli_config(["run"]), expected)
    same(api_config(creg.run), expected)
    same(resolve_run_config({}, get_plugins()), expected)
    assert RUN_DEFAULTS == {**run_defaults(), **RUN_OPTIONS}
    assert {k: v for k, v in RUN_DEFAULTS.items() if k in RunConfig.model_fields and k not in ("adapter", "sources")} \
        == {k: field_default(k) for k in RunConfig.model_fields if k not in ("adapter", "sources")}


def test_cli_options_take_run_configs_defaults(monkeypatch):
    """Every `creg run` option that sets a RunConfig field takes that field's default (or, for the model and the
    sources, creg.config.defaults')."""
    monkeypatch.delenv("CREG_DATA_DIR", raising=False)
    parsed = run_cmd.make_context("run", [], resilient_parsing=True).params  # `creg run` with no options
    seen = set()
    for param in run_cmd.params:
        field = CLI_FIELDS.get(param.name, param.name)
        if field not in RunConfig.model_fields or field in ("adapter", "sources"):
            continue
        seen.add(field)
        default = parsed[param.name]
        if field in ("registry", "controls", "source_options", "bench_options", "adapter_options"):
            assert not default, field  # repeatable KEY=VALUE / NAME options: none by default
            continue
        assert default == field_default(field), field
    assert seen >= {"bench", "n", "seed", "k", "sigma_r", "rho_r", "batch_size", "threads", "cos", "cos_op",
                    "save_maps", "data_dir", "dtype", "device", "prompt", "model"}
    assert parsed["sources"].split(",") == list(DEFAULT_SOURCES)


def test_the_same_settings_give_the_same_run_config_everywhere(spies, tmp_path):
    """creg run's flags, --config FILE (TOML), creg.run's keywords and the resolver agree field by field."""
    flags = ["run", "--adapter", "none", "--source", "oracle,random", "--limit", "5", "--seed", "3", "--k", "4",
             "--sigma-r", "0.5", "--rho-r", "1.5", "--bench-opt", "width=112", "--bench-opt", "height=96",
             "--no-save-maps", "--batch-size", "2"]
    from_flags = cli_config(flags)
    toml = tmp_path / "experiment.toml"
    toml.write_text('adapter = "none"\nsources = ["oracle", "random"]\nlimit = 5\nseed = 3\nk = 4\nsigma_r = 0.5\n'
                    'rho-r = 1.5\nsave_maps = false\nbatch_size = 2\n[bench_options]\nwidth = 112\nheight = 96\n')
    from_file = cli_config(["run", "--config", str(toml)])
    from_api = api_config(creg.run, adapter="none", sources="oracle,random", limit=5, seed=3, k=4, sigma_r=0.5,
                          rho_r=1.5, bench_options={"width": 112, "height": 96}, save_maps=False, batch_size=2)
    resolved = resolve_run_config({"adapter": "none", "sources": ["oracle", "random"], "n": 5, "seed": 3, "k": 4,
                                   "sigma_r": 0.5, "rho_r": 1.5, "bench_options": {"width": 112, "height": 96},
                                   "save_maps": False, "batch_size": 2}, get_plugins())
    for config in (from_file, from_api, resolved):
        same(config, from_flags)
    assert from_flags.n == 5 and from_flags.bench_options == {"width": 112, "height": 96} and not from_flags.save_maps
    # the command line overrides the file
    assert cli_config(["run", "--config", str(toml), "--seed", "9"]).seed == 9


def test_reproduce_plans_creg_runs_run(spies, tmp_path):
    """creg reproduce's Table 1 step is `creg run`'s run at the quick size on the stand-in benchmark."""
    res = CliRunner().invoke(cli, ["reproduce", "--dry-run", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    table1 = spies[-1].steps[0].configs[""]
    same(table1, cli_config(["run", "--limit", str(table1.n)]))
    assert table1.adapter == default_adapter(load_registry())


def test_the_adapter_resolves_alike_everywhere(spies, model_dir):
    """A preset, a preset with another model, an adapter plugin with a model, and a model folder alone (its
    config.json's model_type names the plugin) resolve to the same adapter class and AdapterConfig through
    creg run, creg explain, creg analyze, creg.run, creg.load and creg reproduce."""
    plugins, presets = get_plugins(), load_registry()
    image = model_dir.parent / "s.png"
    Image.new("RGB", (224, 160), (235, 235, 235)).save(image)
    explain = ["--image", str(image), "--ref", "a", "--ref-box", "20,60,60,100", "--tgt", "b", "--tgt-box",
               "160,60,200,100", "--source", "oracle"]
    cases = [  # (creg run/explain flags, creg.load arguments, expected RunConfig.adapter)
        (["--adapter", DEFAULT_MODEL], ((DEFAULT_MODEL,), {}), DEFAULT_MODEL),
        (["--adapter", DEFAULT_MODEL, "--model", str(model_dir)], ((str(model_dir),), {"adapter": DEFAULT_MODEL}), DEFAULT_MODEL),
        (["--adapter", "qwen2vl", "--model", str(model_dir)], ((str(model_dir),), {"adapter": "qwen2vl"}), "qwen2vl"),
        (["--model", str(model_dir)], ((str(model_dir),), {}), "qwen2vl"),
        ([], ((), {}), default_adapter(presets)),
    ]
    for flags, (args, kwargs), adapter in cases:
        run = cli_config(["run", "--source", "oracle", *flags])
        configs = {
            "creg explain": cli_config(["explain", *explain, *flags]),
            "creg analyze layers": cli_config(["analyze", "layers", *flags]),
            "creg.run": api_config(creg.run, sources=["oracle"], **_run_kwargs(flags)),
            "creg.load": api_config(creg.load, *args, **kwargs),
        }
        CliRunner().invoke(cli, ["reproduce", "--dry-run", "--out", str(model_dir.parent / "r"), *flags])
        configs["creg reproduce"] = spies[-1].steps[0].configs[""]
        assert run.adapter == adapter, flags
        want = resolve_adapter(run, plugins, presets)
        for name, config in configs.items():
            assert (config.adapter, config.model) == (run.adapter, run.model), (name, flags)
            assert resolve_adapter(config, plugins, presets) == want, (name, flags)


def _run_kwargs(flags: list[str]) -> dict[str, str]:
    """creg.run's keywords for ``--adapter X --model Y``."""
    return {flags[i].lstrip("-"): flags[i + 1] for i in range(0, len(flags), 2)}


def test_model_type_of_a_cached_hub_id_names_the_plugin(monkeypatch, tmp_path):
    """A hub id in the local cache resolves like a folder, from its cached config.json; nothing is downloaded."""
    from huggingface_hub import constants

    snapshot = tmp_path / "hub" / "models--someone--tiny-vlm" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    (tmp_path / "hub" / "models--someone--tiny-vlm" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny-vlm" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    adapters = get_plugins().names("adapter")
    assert infer_adapter("someone/tiny-vlm", adapters) == "qwen2_5vl"
    assert choose_adapter(None, "someone/tiny-vlm", load_registry(), adapters) == "qwen2_5vl"
    with pytest.raises(RunError, match="cannot tell which adapter plugin loads 'someone/not-cached'"):
        infer_adapter("someone/not-cached", adapters)


def test_an_unknown_model_type_is_one_line_everywhere(tmp_path, monkeypatch):
    monkeypatch.delenv("CREG_REGISTRY", raising=False)
    d = tmp_path / "odd"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "no_such_vlm"}))
    res = CliRunner().invoke(cli, ["run", "--model", str(d), "--source", "oracle"])
    assert res.exit_code == 2 and "model_type 'no_such_vlm'" in res.output and "--adapter NAME" in res.output
    with pytest.raises(creg.api.ApiError, match="model_type 'no_such_vlm'"):
        creg.load(str(d))
    with pytest.raises(RunError, match="model_type 'no_such_vlm'"):
        creg.run(model=str(d), sources="oracle")
