"""The ``creg`` command group: the core commands and the ones plugins add.

Each command lives in its own module of this package; this module only assembles them.
"""

from __future__ import annotations

import os

import click

from creg.cli.analyze import analyze_group
from creg.cli.common import verbosity_params
from creg.cli.explain import explain_cmd
from creg.cli.export import export_cmd
from creg.cli.gallery import gallery_cmd
from creg.cli.list_plugins import list_cmd
from creg.cli.report import report_cmd
from creg.cli.reproduce import reproduce_cmd
from creg.cli.run import run_cmd
from creg.plugins.manager import get_plugins


@click.group()
@click.version_option(package_name="creg")
def cli() -> None:
    """creg: which direction does a vision-language model believe B lies from A?"""


for _command in (list_cmd, run_cmd, report_cmd, export_cmd, explain_cmd, analyze_group, reproduce_cmd, gallery_cmd):
    cli.add_command(_command)
# -v/-q on the group (creg -q run ...) and on every core command (creg run ... -q)
cli.params.extend(verbosity_params(group=True))
for _command in (list_cmd, run_cmd, report_cmd, export_cmd, explain_cmd, reproduce_cmd, gallery_cmd, *analyze_group.commands.values()):
    _command.params.extend(verbosity_params())


def _mount_plugin_commands() -> None:
    """Plugins add their commands; a name of a core command (or one taken by another plugin) is refused."""
    get_plugins().mount_commands(cli, log=lambda m: click.echo(m, err=True))


def main() -> None:
    try:
        _mount_plugin_commands()
    except Exception as e:  # noqa: BLE001 - a plugin's command must not break the core CLI
        if os.environ.get("CREG_STRICT_PLUGINS"):
            raise
        click.echo(f"creg: a plugin failed to add its commands: {type(e).__name__}: {e}", err=True)
    cli()
