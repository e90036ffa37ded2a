"""``creg list``: presets and plugins, with their descriptions and (``--options``) their options;
a metric's settings (compute, aggregate, direction, table) in place of options.

Without ``--options`` nothing but the entry-point modules is imported: descriptions come from
registration (``register(name, target, description=...)``), so listing imports no torch and no model
code. ``--options`` (or naming plugins) imports the named plugins to read their ``Options`` models.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from creg.cli.common import fail
from creg.cli.listing import listing_data
from creg.config.presets import RegistryError, load_registry
from creg.plugins.manager import PluginLoadError, get_plugins
from creg.plugins.metric import metric_from
from creg.plugins.options import declares_options, describe_options

KINDS = (("adapter", "Adapters (--adapter / presets)"), ("source", "Sources (--source)"), ("benchmark", "Benchmarks (--bench)"),
         ("metric", "Metrics (summary.json, table.md, report)"))


def _format_default(value) -> str:
    if isinstance(value, tuple):
        value = list(value)
    return repr(value) if isinstance(value, str) else str(value)


def metric_lines(reg) -> list[str]:
    """``    key: value`` per setting of the metric ``reg`` registers (its description is on the line above)."""
    settings = metric_from(reg).settings()
    return [f"      {k}: {v}" for k, v in settings.items() if k != "description"]


def _flags(reg) -> str:
    """A registration's metadata for the listing line; a metric's direction (its settings: ``creg list NAME``)."""
    if reg.kind == "metric":
        return "  [higher is better]" if reg.metadata.get("higher_is_better") is True else "  [lower is better]"
    flags = [k for k, v in reg.metadata.items() if v is True]
    flags += [f"{k}={v}" for k, v in reg.metadata.items() if v is not True]
    return f"  [{', '.join(flags)}]" if flags else ""


def option_lines(cls) -> list[str]:
    """``    name (type, default X): description`` per option of ``cls.Options``."""

    if not declares_options(cls):
        return ["      (no declared options)"]
    rows = describe_options(cls)
    if not rows:
        return ["      (no options)"]
    return [f"      {r['name']} ({r['type']}, default {_format_default(r['default'])}): {r['description']}".rstrip(": ")
            for r in rows]


@click.command("list")
@click.argument("names", nargs=-1)
@click.option("--options", "show_options", is_flag=True, help="show every plugin's options (imports the plugins)")
@click.option("--registry", "registries", multiple=True, type=click.Path(dir_okay=False), help="extra registry file(s)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (presets, adapters, sources, benchmarks, metrics)")
def list_cmd(names: tuple[str, ...], show_options: bool, registries: tuple[str, ...], as_json: bool) -> None:
    """Presets, adapters, sources, benchmarks and metrics, where each came from, and their options.

    NAMES limits the listing to those plugins and shows their options.
    """

    plugins = get_plugins()
    try:
        presets = load_registry(registries)
    except RegistryError as e:
        fail(str(e))
    if as_json:


        click.echo(json.dumps(listing_data(plugins, presets), indent=2, default=str))
        return
    wanted = set(names)
    unknown = wanted - {n for kind, _ in KINDS for n in plugins.names(kind)} - set(presets)
    if unknown:
        fail(f"no preset or plugin named {', '.join(sorted(unknown))} (see `creg list`)")
    if not wanted:
        click.echo("Presets (creg run --adapter NAME):")
        for name, p in presets.items():
            click.echo(f"  {name:<16} {p.adapter:<10} {p.model or '-'}  ({Path(p.origin).name})")
            if show_options and p.options:
                click.echo(f"      options: {p.options}")
    for kind, title in KINDS:
        regs = [r for n, r in plugins.registered[kind].items() if not wanted or n in wanted]
        if not regs:
            continue
        click.echo(f"{title}:")
        for reg in regs:
            click.echo(f"  {reg.name:<22} {reg.dist:<24} {reg.description}{_flags(reg)}")
            if show_options or wanted:
                try:
                    lines = metric_lines(reg) if kind == "metric" else option_lines(reg.load())
                except PluginLoadError as e:
                    lines = [f"      [fails to load: {e}]"]
                except Exception as e:  # noqa: BLE001 - show it, keep listing
                    lines = [f"      [fails to import: {type(e).__name__}: {e}]"]
                for line in lines:
                    click.echo(line)
    if plugins.failures:
        click.echo("Plugins that failed to load:")
        for f in plugins.failures:
            click.echo(f"  {f.entry_point} ({f.dist}): {f.error}")
    for c in plugins.clashes:
        click.echo(f"Name clash: {c}")
    if not (show_options or wanted):
        click.echo("Options of each plugin: creg list --options (or creg list NAME ...)")
