"""``creg run --config FILE``: re-run a run's config.json, or a user's TOML/YAML; flags override the file."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from creg.cli import cli
from creg.store import RunStore


def _run(args):
    return CliRunner().invoke(cli, ["run", "--no-progress", *args])


def test_rerun_of_a_config_json_gives_the_same_configuration_and_result(tmp_path):
    first = tmp_path / "first"
    r = _run(["--adapter", "none", "--source", "oracle,random", "--n", "4", "--seed", "3", "--k", "4",
              "--bench-opt", "width=96", "--out", str(first)])
    assert r.exit_code == 0, r.output
    again = tmp_path / "again"
    r = _run(["--config", str(first / "config.json"), "--out", str(again)])
    assert r.exit_code == 0, r.output
    a, b = RunStore.read(first), RunStore.read(again)
    assert a.config["run"] == b.config["run"]
    assert b.config["run"]["bench_options"] == {"width": 96} and b.config["run"]["k"] == 4
    assert [x.model_dump() for x in a.records()] == [x.model_dump() for x in b.records()]


def test_toml_settings_with_a_command_line_override(tmp_path):
    cfg = tmp_path / "exp.toml"
    cfg.write_text('adapter = "none"\nsources = ["oracle", "target_box"]\nlimit = 3\nseed = 1\ncos-op = "blur"\n'
                   '[bench_options]\nwidth = 96\n[source_options.oracle]\n')
    out = tmp_path / "run"
    r = _run(["--config", str(cfg), "--seed", "5", "--out", str(out)])
    assert r.exit_code == 0, r.output
    run = RunStore.read(out).config["run"]
    assert run["sources"] == ["oracle", "target_box"] and run["n"] == 3 and run["cos_op"] == "blur"
    assert run["seed"] == 5  # the flag wins over the file
    assert run["bench_options"] == {"width": 96}


def test_run_table_in_toml(tmp_path):
    cfg = tmp_path / "exp.toml"
    cfg.write_text('[run]\nadapter = "none"\nsource = "oracle"\nn = 2\n')
    out = tmp_path / "run"
    assert _run(["--config", str(cfg), "--out", str(out)]).exit_code == 0
    assert RunStore.read(out).config["run"]["n"] == 2


def test_unknown_setting_and_bad_syntax_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('adapter = "none"\nsamples = 3\n')
    r = _run(["--config", str(bad)])
    assert r.exit_code == 2 and "unknown setting(s) samples" in r.output and "limit" in r.output
    broken = tmp_path / "broken.toml"
    broken.write_text("adapter = \n")
    r = _run(["--config", str(broken)])
    assert r.exit_code == 2 and "not valid TOML" in r.output and "Traceback" not in r.output
    r = _run(["--config", str(tmp_path / "exp.ini")])
    assert r.exit_code == 2 and "cannot read it" in r.output
    (tmp_path / "exp.ini").write_text("x")
    r = _run(["--config", str(tmp_path / "exp.ini")])
    assert r.exit_code == 2 and ".toml, .yaml" in r.output


def test_yaml_settings(tmp_path):
    pytest.importorskip("yaml")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("adapter: none\nsources: [oracle]\nlimit: 2\nbench_options: {width: 96}\n")
    out = tmp_path / "run"
    r = _run(["--config", str(cfg), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert RunStore.read(out).config["run"]["bench_options"] == {"width": 96}


def test_yaml_without_pyyaml_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)
    cfg = tmp_path / "exp.yml"
    cfg.write_text("adapter: none\n")
    r = _run(["--config", str(cfg)])
    assert r.exit_code == 2 and "pip install pyyaml" in r.output


def test_a_newer_config_json_field_is_ignored_with_a_warning(tmp_path):
    doc = {"schema_version": 2, "run": {"adapter": "none", "sources": ["oracle"], "n": 2, "future_knob": 7}}
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(doc))
    out = tmp_path / "run"
    r = _run(["--config", str(cfg), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "future_knob" in r.output and "ignored" in r.output


def test_the_user_guides_settings_file_is_valid(tmp_path):
    """docs/user-guide.md's TOML example is a settings file creg run accepts as written."""
    import re
    from pathlib import Path

    from creg.cli.run import run_cmd
    from creg.config.file import default_map

    text = (Path(__file__).resolve().parents[1] / "docs" / "user-guide.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    cfg = tmp_path / "experiment.toml"
    cfg.write_text(block)
    defaults = default_map(cfg, {p.name: p for p in run_cmd.params})
    assert defaults["sources"] == "creg,attention_rollout,random" and defaults["n"] == 200
    assert defaults["source_opt"] == ["creg.layers=[-2, -3]"] and defaults["bench_opt"] == ["width=448"]
