"""``creg list``: presets and plugins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import fail, log, parse_options

from ..plugins import get_plugins
from ..registry import RegistryError, load_registry


@click.command("list")
@click.option("--registry", "registries", multiple=True, type=click.Path(dir_okay=False), help="extra registry file(s)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (presets, adapters, sources, benchmarks)")
def list_cmd(registries: tuple[str, ...], as_json: bool) -> None:
    """Presets, adapters, sources and benchmarks, and which package each came from."""
    plugins = get_plugins()
    try:
        presets = load_registry(registries)
    except RegistryError as e:
        fail(str(e))
    if as_json:
        import json

        from .listing import listing_data

        click.echo(json.dumps(listing_data(plugins, presets), indent=2, default=str))
        return
    click.echo("Presets (creg run --adapter NAME):")
    for name, p in presets.items():
        click.echo(f"  {name:<16} {p.adapter:<10} {p.model or '-'}  ({Path(p.origin).name})")
    for kind, title in (("adapter", "Adapters"), ("source", "Sources (--source)"), ("benchmark", "Benchmarks (--bench)")):
        click.echo(f"{title}:")
        for name, reg in plugins.registered[kind].items():
            desc = ""
            try:
                desc = getattr(reg.load(), "description", "") if kind != "adapter" else ""
            except Exception as e:  # noqa: BLE001 - show it, keep listing
                desc = f"[fails to import: {type(e).__name__}: {e}]"
            click.echo(f"  {name:<22} {reg.dist:<24} {desc}")
    if plugins.failures:
        click.echo("Plugins that failed to load:")
        for f in plugins.failures:
            click.echo(f"  {f.entry_point} ({f.dist}): {f.error}")
    for c in plugins.clashes:
        click.echo(f"Name clash: {c}")


