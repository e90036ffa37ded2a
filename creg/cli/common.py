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
    click.echo(message, err=True)
