"""Hardened plugins: dispatch through pluggy, base-class checks, metadata without imports,
creg's names win clashes (warned and recorded), command names of the core are refused."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import click
import pytest
from click.testing import CliRunner

from creg.plugins import manager as plugins_mod
from creg.plugins.manager import CommandGuard, PluginTypeError, discover, get_plugins
from fake_entry_points import entry_point


@pytest.fixture
def third_party(monkeypatch, tmp_path):
    """A distribution that sorts before ``creg`` ("aaa-evil") registering ``oracle`` and a command ``run``;
    a plugin whose hook function lacks @hookimpl; one that registers a class of the wrong kind."""
    (tmp_path / "evil_plugin.py").write_text(textwrap.dedent("""
        import click
        import creg
        from creg.plugins.relevance import RelevanceSource

        class Evil(RelevanceSource):
            name = "oracle"
            needs_model = False

        class EvilExtra(Evil):
            name = "evil_extra"
            def explain(self, ctx):
                from creg.sources.geometry import OracleSource
                if self.name == "oracle":
                    raise AssertionError("the third-party oracle must never run")
                return OracleSource().explain(ctx)

        @creg.hookimpl
        def register_sources(register):
            register("oracle", Evil, description="an impostor")
            register("evil_extra", EvilExtra, description="a new name", needs_model=False)

        @creg.hookimpl
        def register_commands(cli):
            cli.add_command(click.Command("run", callback=lambda: print("hijacked")))
            cli.add_command(click.Command("evil-cmd", callback=lambda: print("evil command ran")))
    """))
    (tmp_path / "unmarked_plugin.py").write_text(textwrap.dedent("""
        CALLED = []
        def register_sources(register):  # no @creg.hookimpl: must not be called
            CALLED.append(True)
            register("unmarked", "unmarked_plugin:X")
    """))
    (tmp_path / "wrongkind_plugin.py").write_text(textwrap.dedent("""
        import creg
        class NotASource:
            pass
        @creg.hookimpl
        def register_sources(register):
            register("wrongkind", "wrongkind_plugin:NotASource", description="registered as a source")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    real = plugins_mod.entry_points

    def fake(group):
        return [entry_point("evil", "evil_plugin", "aaa-evil"), entry_point("unmarked", "unmarked_plugin", "aab-unmarked"),
                entry_point("wrongkind", "wrongkind_plugin", "aac-wrong")] + list(real(group=group))

    monkeypatch.setattr(plugins_mod, "entry_points", fake)
    monkeypatch.delenv("CREG_STRICT_PLUGINS", raising=False)
    plugins_mod.get_plugins(refresh=True)
    yield
    monkeypatch.undo()
    for m in ("evil_plugin", "unmarked_plugin", "wrongkind_plugin"):
        sys.modules.pop(m, None)
    plugins_mod.get_plugins(refresh=True)


def test_creg_own_names_win_a_clash_with_a_distribution_that_sorts_first(third_party):
    p = discover()
    assert p.get("source", "oracle").dist.startswith("creg ")
    assert p.load("source", "oracle").__name__ == "OracleSource"
    assert p.get("source", "evil_extra").dist == "aaa-evil 1.0"
    assert any("'oracle' from aaa-evil 1.0 (evil_plugin) ignored" in c for c in p.clashes)


def test_a_hook_function_without_hookimpl_is_not_called(third_party):
    p = discover()
    import unmarked_plugin

    assert unmarked_plugin.CALLED == [] and "unmarked" not in p.names("source")


def test_a_target_of_the_wrong_kind_is_refused_when_loaded(third_party):
    p = discover()
    with pytest.raises(PluginTypeError, match=r"source 'wrongkind' \(aac-wrong 1.0, wrongkind_plugin\): registered "
                                              r"NotASource, which is not a subclass of creg.plugins.relevance.RelevanceSource"):
        p.load("source", "wrongkind")


def test_a_clash_is_a_warning_at_run_and_is_recorded_with_each_plugins_distribution(third_party, tmp_path):
    from creg.config.presets import load_registry
    from creg.config.run_config import RunConfig
    from creg.config.resolve import plugin_provenance

    out = tmp_path / "run"
    res = CliRunner().invoke(plugins_mod_cli(), ["run", "--adapter", "none", "--source", "oracle,evil_extra", "--limit", "4",
                                                 "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "warning: plugin name clash: source 'oracle' from aaa-evil 1.0" in res.output
    assert "| oracle | 4 | 0.0" in res.output  # creg's oracle ran
    prov = plugin_provenance(RunConfig(adapter="none", sources=["oracle", "evil_extra"]), plugins_mod.get_plugins(),
                             load_registry())
    assert prov.sources["oracle"].dist.startswith("creg ") and prov.sources["evil_extra"].dist == "aaa-evil 1.0"
    assert prov.benchmark.plugin == "creg_synthetic" and prov.adapter is None
    assert any("aaa-evil" in c for c in prov.clashes)
    stored = json.loads((out / "config.json").read_text())["plugins"]  # the test reads the file the run wrote
    assert stored["sources"]["oracle"]["dist"].startswith("creg ") and stored["sources"]["evil_extra"]["dist"] == "aaa-evil 1.0"
    assert any("'oracle' from aaa-evil 1.0" in c for c in stored["clashes"])


def plugins_mod_cli():
    from creg.cli import cli

    return cli


def test_a_plugin_command_named_like_a_core_command_is_refused(third_party):
    group = click.Group("creg")
    group.add_command(click.Command("run", callback=lambda: None))
    messages: list[str] = []
    plugins_mod.get_plugins().mount_commands(group, log=messages.append)
    assert "evil-cmd" in group.commands
    assert group.commands["run"].callback() is None  # still the core one
    assert any("command 'run' from aaa-evil 1.0 (evil_plugin) refused: 'run' is a core command" in m for m in messages)


def test_through_the_real_entry_point_creg_run_stays_creg_run(third_party):
    from creg.cli.main import _mount_plugin_commands, cli

    _mount_plugin_commands()
    assert cli.commands["run"].callback.__module__ == "creg.cli.run"
    cli.commands.pop("evil-cmd", None)


def test_command_guard_refuses_a_second_plugin_taking_a_name():
    group = click.Group("creg")
    refused: list[str] = []
    CommandGuard(group, set(), refused.append, "a 1.0").add_command(click.Command("audit"))
    CommandGuard(group, set(), refused.append, "b 1.0").add_command(click.Command("audit"))
    assert list(group.commands) == ["audit"] and "from b 1.0 refused" in refused[0]


def test_registration_metadata_is_shown_without_importing_the_plugin():
    p = discover()
    reg = p.get("benchmark", "coco_pairs")
    assert reg.metadata == {"needs_data": True} and "COCO 2017" in reg.description
    assert isinstance(reg.target, str)  # nothing imported to know it


def test_list_and_help_import_neither_torch_nor_model_code():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom creg.cli.main import cli, _mount_plugin_commands\n"
            "_mount_plugin_commands()\n"
            "for args in (['--help'], ['list'], ['run', '--help']):\n"
            "    r = CliRunner().invoke(cli, args); assert r.exit_code == 0, r.output\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers') "
            "or m in ('creg.plugins.adapter', 'creg.plugins.relevance', 'creg_qwen2vl.adapter'))\n"
            "print('IMPORTED', bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "IMPORTED []" in out, out


@pytest.mark.parametrize("module,adapter", [("creg_qwen2vl", "qwen2vl"), ("creg_qwen2_5vl", "qwen2_5vl"),
                                            ("creg_llava", "llava"), ("creg_internvl", "internvl"),
                                            ("creg_planted", "planted")])
def test_first_party_adapter_plugin_import_is_light(module, adapter):
    """``creg list`` imports the plugin module; it must not pull in torch or transformers."""
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    assert adapter in get_plugins().names("adapter")


def test_list_options_shows_each_plugins_options():
    res = CliRunner().invoke(plugins_mod_cli(), ["list", "synthetic", "coco_pairs"])
    assert res.exit_code == 0, res.output
    assert "width (int >= 32, <= 4096, default 224): image width in pixels" in res.output
    assert "instances (unique|largest|all, default 'unique')" in res.output
    assert "max_per_image (int >= 0, default 1)" in res.output
    res = CliRunner().invoke(plugins_mod_cli(), ["list", "--options"])
    assert res.exit_code == 0 and "min_ratio" in res.output


@pytest.mark.parametrize("kind", ["source", "benchmark"])
def test_first_party_registration_metadata_matches_the_classes(kind):
    """The capability `creg list` shows without importing is what the class does once imported
    (the description is written only at registration: tests/test_plugin_descriptions.py)."""
    p = discover()
    for name, reg in p.registered[kind].items():
        if not reg.dist.startswith("creg "):
            continue
        cls = reg.load()
        if kind == "source":
            assert reg.metadata.get("needs_model", True) == cls.needs_model, name
        else:
            assert reg.metadata.get("needs_data", False) == cls.needs_data, name


def test_a_name_that_could_become_a_path_or_break_the_command_line_is_refused():
    import types

    from creg import hookimpl

    plugin = types.ModuleType("naughty_plugin")

    @hookimpl
    def register_sources(register):
        register("x/../../../elsewhere/y", "naughty_plugin:X")
        register("a.b", "naughty_plugin:X")  # --source-opt a.b.k=v could not name it
        register("fine_name", "naughty_plugin:X")

    plugin.register_sources = register_sources
    p = discover()
    p.add_module(plugin, dist="naughty 1.0")
    assert "fine_name" in p.names("source")
    assert not {"x/../../../elsewhere/y", "a.b"} & set(p.names("source"))
    refused = [f.error for f in p.failures if f.dist == "naughty 1.0"]
    assert len(refused) == 2 and "'x/../../../elsewhere/y' refused" in refused[0]
