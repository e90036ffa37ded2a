"""``creg list --json``: the listing as one JSON object, for scripts."""

from __future__ import annotations

import json

from click.testing import CliRunner

from creg.cli import cli


def test_list_json_holds_presets_and_plugins(tmp_path):
    reg = tmp_path / "mine.toml"
    reg.write_text('[presets.my-model]\nadapter = "qwen2vl"\nmodel = "/models/mine"\ndescription = "a local fine-tune"\n')
    result = CliRunner().invoke(cli, ["list", "--json", "--registry", str(reg)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"presets", "adapters", "sources", "benchmarks", "metrics", "failures", "clashes"}
    presets = {p["name"]: p for p in data["presets"]}
    assert presets["my-model"] == {"name": "my-model", "adapter": "qwen2vl", "model": "/models/mine", "dtype": "auto",
                                   "device": "auto", "prompt": "A", "description": "a local fine-tune", "options": {},
                                   "origin": "mine.toml"}
    assert "qwen2vl-toy" in presets
    sources = {s["name"]: s for s in data["sources"]}
    assert {"creg", "oracle", "random", "attention_rollout"} <= set(sources)
    assert sources["creg"]["dist"] and {"name", "plugin", "dist", "description", "metadata"} <= set(sources["creg"])
    assert "synthetic" in {b["name"] for b in data["benchmarks"]}
    assert "qwen2vl" in {a["name"] for a in data["adapters"]}


def test_list_json_of_a_bad_registry_is_a_one_line_error(tmp_path):
    reg = tmp_path / "bad.toml"
    reg.write_text("[presets.x]\nadapter = 3\n")
    result = CliRunner().invoke(cli, ["list", "--json", "--registry", str(reg)])
    assert result.exit_code == 2 and "Traceback" not in result.output
