"""Plugin discovery: first-party plugins through entry points, failures isolated, clashes reported."""

import sys
import textwrap
import types

import pytest

import creg
from creg.plugins import manager as plugins_mod
from creg.plugins.manager import PluginLoadError, UnknownName, discover
from fake_entry_points import entry_point


def test_first_party_plugins_come_through_the_entry_point_group():
    p = discover()
    assert {"oracle", "random"} <= set(p.names("source"))
    assert "synthetic" in p.names("benchmark")
    reg = p.get("source", "oracle")
    assert reg.dist.startswith("creg ")  # registered by the creg distribution, like a third party
    assert reg.load().__name__ == "OracleSource"


def test_unknown_name_suggests_the_closest_valid_names():
    p = discover()
    with pytest.raises(UnknownName, match=r"unknown source 'oracel'; did you mean oracle"):
        p.get("source", "oracel")


@pytest.fixture
def fake_entry_points(monkeypatch, tmp_path):
    """Two third-party plugins: one that breaks on import, one that registers a clashing name."""
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('needs a package you do not have')\n")
    (tmp_path / "clashing_plugin.py").write_text(textwrap.dedent("""
        import creg
        @creg.hookimpl
        def register_sources(register):
            register("oracle", "clashing_plugin:X")
            register("fancy", "clashing_plugin:X")
        class X: pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    real = plugins_mod.entry_points

    def fake(group):
        eps = list(real(group=group))
        return eps + [entry_point("broken", "broken_plugin", "creg-broken"), entry_point("zz_clash", "clashing_plugin", "creg-clash")]

    monkeypatch.setattr(plugins_mod, "entry_points", fake)
    yield
    for m in ("broken_plugin", "clashing_plugin"):
        sys.modules.pop(m, None)


def test_a_broken_plugin_is_listed_and_does_not_break_the_others(fake_entry_points, monkeypatch):
    monkeypatch.delenv("CREG_STRICT_PLUGINS", raising=False)
    p = discover()
    assert [f.entry_point for f in p.failures] == ["broken"]
    assert "needs a package you do not have" in p.failures[0].error
    assert "synthetic" in p.names("benchmark") and "fancy" in p.names("source")
    # the clash is reported and the first registration (creg's own oracle) wins
    assert any("'oracle'" in c and "creg-clash" in c for c in p.clashes)
    assert p.get("source", "oracle").dist.startswith("creg ")


def test_strict_mode_makes_a_load_failure_fatal(fake_entry_points, monkeypatch):
    monkeypatch.setenv("CREG_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="broken"):
        discover()


def test_programmatic_registration_for_notebooks_and_tests():
    p = discover()
    mod = types.ModuleType("my_local_plugin")

    @creg.hookimpl
    def register_benchmarks(register):
        register("mine", "creg_synthetic.benchmark:SyntheticBenchmark")

    mod.register_benchmarks = register_benchmarks
    p.add_module(mod)
    assert p.get("benchmark", "mine").dist == "(local)"
