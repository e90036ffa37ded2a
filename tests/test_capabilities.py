"""Capabilities checked before a run (creg.plugins.capabilities): sources need, adapters provide, the run
compares the two before its directory exists, and ``--skip-unsupported`` runs the rest."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "creg-example-adapter"
sys.path.insert(0, str(EXAMPLE / "src"))

import creg_example_adapter  # noqa: E402
from creg_example_adapter.adapter import ExampleTinyAdapter  # noqa: E402

import creg.plugins.manager  # noqa: E402
from creg.plugins.adapter import AdapterConfig, VLMAdapter  # noqa: E402
from creg.plugins.capabilities import ALL_CAPABILITIES, Capability, adapter_provides
from creg.plugins.compatibility import UnsupportedSources, check_sources, source_needs, unsupported_sources
from creg.cli.main import cli  # noqa: E402
from creg.plugins.manager import get_plugins  # noqa: E402
from creg.summary.aggregate import markdown_table  # noqa: E402
from creg.config.run_config import RunConfig  # noqa: E402
from creg.config.resolve import build_sources

C = Capability


def _sources(*names, **options):
    return build_sources(RunConfig(sources=list(names), source_options=options), get_plugins(), True)


@pytest.fixture
def example_plugins(monkeypatch):
    """The installed plugins plus the example adapter's distribution, as `creg` would find it installed."""
    plugins = creg.plugins.manager.discover()
    plugins.add_module(creg_example_adapter, dist="creg-example-adapter 0.1.0")
    monkeypatch.setattr(creg.plugins.manager, "_cached", plugins)
    return plugins


@pytest.mark.parametrize("name, needs", [
    ("creg", {C.LAYER_GRADIENTS}), ("gradxact", {C.LAYER_GRADIENTS}), ("gradnorm", {C.LAYER_GRADIENTS}),
    ("random_ref", {C.LAYER_GRADIENTS}), ("gradcam", {C.VISION_ACTIVATIONS}),
    ("attention_rollout", {C.ATTENTION_MAPS}), ("integrated_gradients", {C.LAYER_GRADIENTS, C.LAYER_REPLAY}),
    ("oracle", set()), ("random", set()), ("random_relevance", set()), ("target_box", set()),
])
def test_first_party_sources_need_what_they_read(name, needs):
    (source,) = _sources(name)
    assert source_needs(source) == needs


def test_every_first_party_adapter_serves_every_first_party_source():
    plugins = get_plugins()
    sources = _sources(*plugins.names("source"))
    first_party = [n for n in plugins.names("adapter") if plugins.get("adapter", n).provenance.get("dist", "").startswith("creg")]
    assert {"qwen2vl", "llava", "internvl"} <= set(first_party)
    for name in first_party:
        assert unsupported_sources(plugins.load("adapter", name), sources) == [], name


def test_an_adapter_that_declares_nothing_provides_everything():
    class Undeclared(VLMAdapter):  # a 0.1/0.2 third-party adapter: no ``provides``
        pass

    assert adapter_provides(Undeclared) == ALL_CAPABILITIES
    kept = check_sources("old", Undeclared, _sources("attention_rollout", "gradcam"))
    assert [s.name for s in kept] == ["attention_rollout", "gradcam"]


def test_the_example_adapter_declares_no_attention_maps():
    assert adapter_provides(ExampleTinyAdapter) == ALL_CAPABILITIES - {C.ATTENTION_MAPS}


def test_mismatch_is_one_line_naming_source_and_capability():
    with pytest.raises(UnsupportedSources) as e:
        check_sources("example-tiny", ExampleTinyAdapter, _sources("creg", "attention_rollout"))
    msg = str(e.value)
    assert "\n" not in msg and "'attention_rollout'" in msg and "attention_maps" in msg and "'creg'" not in msg
    assert "--skip-unsupported" in msg and "example-tiny" in msg


def test_skipping_keeps_the_others_and_warns():
    warnings = []
    kept = check_sources("example-tiny", ExampleTinyAdapter, _sources("creg", "attention_rollout", "oracle"),
                         skip_unsupported=True, warn=warnings.append)
    assert [s.name for s in kept] == ["creg", "oracle"]
    assert len(warnings) == 1 and "attention_rollout" in warnings[0] and "running creg, oracle" in warnings[0]
    with pytest.raises(UnsupportedSources, match="no other source is left"):
        check_sources("example-tiny", ExampleTinyAdapter, _sources("attention_rollout"), skip_unsupported=True)


def test_no_model_checks_nothing():
    assert [s.name for s in check_sources("none", None, _sources("oracle"))] == ["oracle"]


ARGS = ["run", "--adapter", "example-tiny", "--model", "random:0", "--bench", "synthetic", "--limit", "2",
        "--source", "gradxact,attention_rollout,oracle", "--no-progress"]


def test_run_refuses_before_the_run_directory_exists(example_plugins, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, [*ARGS, "--out", str(out)])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "attention_rollout" in lines[0] and "attention_maps" in lines[0], res.output
    assert not out.exists()


def test_run_with_skip_unsupported_runs_the_other_sources(example_plugins, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, [*ARGS, "--out", str(out), "--skip-unsupported"])
    assert res.exit_code == 0, res.output
    assert "skipping: source 'attention_rollout'" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["sources"]) == ["gradxact", "oracle"] and summary["sources"]["gradxact"]["n"] == 2
    assert summary["vlm_accuracy"] is not None
    assert json.loads((out / "config.json").read_text())["run"]["sources"] == ["gradxact", "oracle"]
    again = CliRunner().invoke(cli, [*ARGS, "--out", str(out), "--skip-unsupported"])  # the same command resumes
    assert again.exit_code == 0, again.output


def test_api_explain_refuses_in_one_line():
    from creg.api import ApiError, Model
    from PIL import Image

    model = Model("example-tiny", ExampleTinyAdapter.load(AdapterConfig(model="random:0")))
    with pytest.raises(ApiError, match="'attention_rollout' needs attention maps"):
        model.explain(Image.new("RGB", (112, 84)), ref=("a", (0, 0, 20, 20)), tgt=("b", (60, 40, 90, 70)),
                      sources=["gradxact", "attention_rollout"])


def _summary(adapter):
    return {"sources": {"creg": {"n": 0}}, "vlm_accuracy": None, "adapter": adapter}


def test_no_model_in_this_run_only_when_there_is_none():
    assert "no model in this run" in markdown_table(_summary("none"))
    with_model = markdown_table(_summary("example-tiny"))
    assert "no model in this run" not in with_model and "no sample was answered" in with_model


def test_api_run_takes_skip_unsupported(example_plugins, tmp_path):
    import creg

    with pytest.raises(UnsupportedSources, match="attention_rollout"):
        creg.run(adapter="example-tiny", model="random:0", sources="gradxact,attention_rollout", n=1,
                 out=str(tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()
    summary = creg.run(adapter="example-tiny", model="random:0", sources="gradxact,attention_rollout", n=1,
                       out=str(tmp_path / "run"), skip_unsupported=True)
    assert list(summary["sources"]) == ["gradxact"]


def _samples():
    from PIL import Image

    from creg.core.sample import Box, make_sample

    image = Image.new("RGB", (112, 84), (40, 40, 40))
    return [make_sample(id="s", image=image, image_size=image.size, ref_name="a", ref_box=Box(x0=0, y0=0, x1=20, y1=20),
                        tgt_name="b", tgt_box=Box(x0=60, y0=40, x1=90, y1=70), relation="right")]


def test_the_contract_reads_what_the_adapter_declares():
    """The contract's attention test follows ``provides``: the example adapter, which declares no
    attention maps, passes it without restating that on the test class; claiming them fails it."""
    from creg.testing import AdapterContract

    class Contract(AdapterContract):  # no supports_attentions = False here
        pass

    Contract().test_attention_maps_are_streamed(ExampleTinyAdapter.load(AdapterConfig(model="random:0")), _samples())

    class Overclaims(ExampleTinyAdapter):  # planted bug: declares attention maps it does not stream
        provides = ALL_CAPABILITIES

    with pytest.raises(NotImplementedError):
        Contract().test_attention_maps_are_streamed(Overclaims.load(AdapterConfig(model="random:0")), _samples())
