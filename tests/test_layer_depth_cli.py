"""Requested layers beyond the model's depth: one clear line and exit 2, no traceback
(`creg run` and `creg explain`), e.g. the example adapter's three layers under the default
`creg` source (layers -2..-5)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from creg.cli import cli
from creg.plugins.manager import get_plugins
from creg.testing import draw_image

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "creg-example-adapter"


@pytest.fixture(scope="module")
def with_example_adapter():
    sys.path.insert(0, str(EXAMPLE / "src"))
    import creg_example_adapter

    plugins = get_plugins()
    if "example-tiny" not in plugins.names("adapter"):
        plugins.add_module(creg_example_adapter, dist="creg-example-adapter 0.1.0")
    return plugins


def test_creg_run_with_the_default_creg_layers_on_a_three_layer_model(with_example_adapter, tmp_path):
    res = CliRunner().invoke(cli, ["run", "--adapter", "example-tiny", "--model", "random:0", "--source", "creg",
                                   "--bench", "synthetic", "--n", "2", "--out", str(tmp_path / "run"), "--no-progress"])
    assert res.exit_code == 2, res.output
    last = res.output.strip().splitlines()[-1]
    assert last == ("creg: layer -5 is out of range: the model of adapter ExampleTinyAdapter has 3 decoder layers, "
                    "so hidden-state indices run from -4 to 3"), res.output
    assert "Traceback" not in res.output


def test_the_example_runs_with_layers_it_has(with_example_adapter, tmp_path):
    res = CliRunner().invoke(cli, ["run", "--adapter", "example-tiny", "--model", "random:0", "--source", "creg,gradnorm",
                                   "--source-opt", "creg.layers=-2,-3,-4", "--bench", "synthetic", "--n", "2",
                                   "--out", str(tmp_path / "run"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "| creg | 2 |" in res.output


def test_creg_explain_says_the_same(tiny_qwen2vl_dir, tmp_path):
    image = tmp_path / "scene.png"
    draw_image((112, 84), noise_seed=1).save(image)
    res = CliRunner().invoke(cli, ["explain", "--adapter", "qwen2vl", "--model", str(tiny_qwen2vl_dir), "--image", str(image),
                                   "--source", "creg", "--source-opt", "creg.layers=-2,-9",
                                   "--ref", "dog", "--ref-box", "0,0,20,20", "--tgt", "cat", "--tgt-box", "60,40,100,80"])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines()[-1] == ("creg: layer -9 is out of range: the model of adapter Qwen2VLAdapter "
                                                   "has 4 decoder layers, so hidden-state indices run from -5 to 4"), res.output
