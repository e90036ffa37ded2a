"""The worked examples of docs/architecture.md, "Adding a relevance source" and "Adding a benchmark", work as
written: each is one module plus one entry-point line, installed as a third-party distribution would be, and a
run of `creg run` picks both up with nothing else changed."""

from __future__ import annotations

import json
import sys
import tomllib

import pytest
from click.testing import CliRunner

from creg.cli import cli
from creg.plugins import manager as plugins_mod
from doc_blocks import doc_block
from fake_entry_points import entry_point

PACKAGES = {"source": ("my_sources", "blob"), "benchmark": ("my_bench", "pairs")}


def block(name: str) -> str:
    return doc_block("architecture.md", f"room-example:{name}")


@pytest.fixture
def installed(monkeypatch, tmp_path):
    """Both examples as packages on sys.path, behind their entry-point lines."""
    eps = []
    for kind, (package, module) in PACKAGES.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / f"{module}.py").write_text(block(f"{kind}-module"))
        ((name, value),) = tomllib.loads(block(f"{kind}-entry-point"))["project"]["entry-points"]["creg"].items()
        assert value == f"{package}.{module}"  # the line names the module the example is
        eps.append(entry_point(name, value, package.replace("_", "-")))
    monkeypatch.syspath_prepend(str(tmp_path))
    real = plugins_mod.entry_points
    monkeypatch.setattr(plugins_mod, "entry_points", lambda group: list(real(group=group)) + eps)
    monkeypatch.delenv("CREG_STRICT_PLUGINS", raising=False)
    plugins_mod.get_plugins(refresh=True)
    yield
    monkeypatch.undo()
    for package, module in PACKAGES.values():
        sys.modules.pop(package, None)
        sys.modules.pop(f"{package}.{module}", None)
    plugins_mod.get_plugins(refresh=True)


def test_the_examples_are_listed_with_their_distributions(installed):
    res = CliRunner().invoke(cli, ["list"])
    assert res.exit_code == 0, res.output
    assert "blob" in res.output and "right_of" in res.output
    assert "my-sources" in res.output and "my-bench" in res.output


def test_a_run_scores_the_example_source_on_the_example_benchmark(installed, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--adapter", "none", "--bench", "right_of", "--source", "blob,oracle,random",
                                   "--limit", "6", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_samples"] == 6 and set(summary["sources"]) == {"blob", "oracle", "random"}
    # B is right of A in every scene and the blob sits on B: its compass points east like the oracle's
    assert summary["sources"]["blob"]["dae"] < 25 and summary["sources"]["blob"]["ea"] == 1.0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {s["relation"] for s in samples} == {"right"} and len(samples) == 6
