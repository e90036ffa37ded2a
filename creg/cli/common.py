"""What every creg command shares: option parsing and one-line errors."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

def parse_value(v: str) -> Any:
    try:
        return json.loads(v)
    except ValueError:
        return v


def parse_options(items: tuple[str, ...], *, keyed: bool) -> dict[str, Any]:
    """``key=value`` (or ``source.key=value`` when ``keyed``) pairs; values parsed as JSON when they can be."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{item!r}: expected {'SOURCE.KEY' if keyed else 'KEY'}=VALUE")
        if keyed:
            src, dot, opt = key.partition(".")
            if not dot or not opt:
                raise click.BadParameter(f"{item!r}: expected SOURCE.KEY=VALUE")
            out.setdefault(src, {})[opt] = parse_value(value)
        else:
            out[key] = parse_value(value)
    return out


def fail(message: str, code: int = 2) -> None:
    click.echo(f"creg: {message}", err=True)
    sys.exit(code)



def log(message: str) -> None:
    """A progress or log message: the ``creg`` logger (:mod:`creg.logs`; ``-q`` hides INFO, warnings stay)."""
    from .. import logs

    if message.lstrip().lower().startswith(("creg: warning", "warning:")):
        logs.warning(message)
    else:
        logs.info(message)


def _verbosity(key: str, group: bool):
    def callback(ctx: click.Context, param: click.Parameter, value: int) -> None:
        from .. import logs

        meta = ctx.find_root().meta
        if group:
            meta[f"creg.{key}"] = value
        elif value:
            meta[f"creg.{key}"] = meta.get(f"creg.{key}", 0) + value
        else:
            return
        logs.configure(meta.get("creg.verbose", 0) - meta.get("creg.quiet", 0))

    return callback


def verbosity_params(*, group: bool = False) -> list[click.Option]:
    """``-v/--verbose`` and ``-q/--quiet`` (counted) for the ``creg`` group (``creg -q run``) and each
    command (``creg run -q``): the level of the ``creg`` logger (:func:`creg.logs.configure`)."""
    return [click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_verbosity("verbose", group),
                         help="more log messages (-v: debug)"),
            click.Option(["-q", "--quiet"], count=True, expose_value=False, callback=_verbosity("quiet", group),
                         help="fewer log messages (-q: warnings and errors only, no progress bar; -qq: errors only)")]


def config_file_option(fn):
    """``--config FILE``: the command's settings from a TOML/YAML file or a run's config.json
    (:mod:`creg.run_file`); options given on the command line override the file."""
    def load(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is None:
            return
        from ..run_file import ConfigFileError, default_map

        try:
            defaults = default_map(value, {p.name: p for p in ctx.command.params}, log=log)
        except ConfigFileError as e:
            fail(str(e))
        ctx.default_map = {**(ctx.default_map or {}), **defaults}

    return click.option("--config", "config", type=click.Path(dir_okay=False), default=None, is_eager=True,
                        expose_value=False, callback=load, metavar="FILE",
                        help="settings from a TOML/YAML file or a run's config.json; command-line options override it")(fn)
