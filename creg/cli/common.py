"""What every creg command shares: the common options (one definition for ``run``, ``explain``
and ``analyze``), option parsing and one-line errors.

Every option that sets a :class:`creg.config.run_config.RunConfig` field takes that field's default and bounds
(:mod:`creg.config.defaults`); numbers are range-checked by click (``--k 0`` is a usage error, exit code 2);
everything else is checked when :func:`run_config_from` builds the RunConfig through the one resolver
(:func:`creg.config.resolve.resolve_run_config`) and when the plugins' options are validated, all before a run
directory is touched.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click

from creg.config.defaults import DATA_DIR_ENV, DEFAULT_BENCH, field_default
from creg.config.file import ConfigFileError, default_map
from creg.config.presets import RegistryError
from creg.config.resolve import resolve_run_config
from creg.config.run_config import DTYPES, RunConfig
from creg.core import logs
from creg.core.errors import RunError
from creg.execution.batching import parse_batch_size
from creg.plugins.manager import UnknownName, get_plugins


def field_range(name: str, kind: type = int) -> click.ParamType:
    """click's range type (``kind``: int or float) with the bounds of RunConfig field ``name`` (its ge/gt/le/lt)."""
    bounds: dict[str, Any] = {}
    for m in RunConfig.model_fields[name].metadata:
        for attr, key, open_ in (("ge", "min", False), ("gt", "min", True), ("le", "max", False), ("lt", "max", True)):
            if getattr(m, attr, None) is not None:
                bounds[key] = getattr(m, attr)
                if kind is float:
                    bounds[f"{key}_open"] = open_
    return click.IntRange(**bounds) if kind is int else click.FloatRange(**bounds)


def parse_value(v: str) -> Any:
    """A ``--*-opt`` value: JSON when it parses (numbers, lists, true/false), else the string."""
    try:
        return json.loads(v)
    except ValueError:
        return v


def parse_options(items: tuple[str, ...], *, keyed: bool, flag: str = "--source-opt") -> dict[str, Any]:
    """``key=value`` (or ``source.key=value`` when ``keyed``) pairs; values parsed as JSON when they can be."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{item!r}: expected {'SOURCE.KEY' if keyed else 'KEY'}=VALUE", param_hint=flag)
        if keyed:
            src, dot, opt = key.partition(".")
            if not dot or not opt:
                raise click.BadParameter(f"{item!r}: expected SOURCE.KEY=VALUE", param_hint=flag)
            out.setdefault(src, {})[opt] = parse_value(value)
        else:
            out[key] = parse_value(value)
    return out


def fail(message: str, code: int = 2) -> None:
    """Print ``creg: message`` on stderr and exit with ``code`` (2: bad input), no traceback."""
    click.echo(f"creg: {message}", err=True)
    sys.exit(code)


def log(message: str) -> None:
    """A progress or log message: the ``creg`` logger (:mod:`creg.core.logs`; ``-q`` hides INFO, warnings stay)."""

    if message.lstrip().lower().startswith(("creg: warning", "warning:")):
        logs.warning(message)
    else:
        logs.info(message)


def _verbosity(key: str, group: bool):
    def callback(ctx: click.Context, param: click.Parameter, value: int) -> None:

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
    command (``creg run -q``): the level of the ``creg`` logger (:func:`creg.core.logs.configure`)."""
    return [click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_verbosity("verbose", group),
                         help="more log messages (-v: debug)"),
            click.Option(["-q", "--quiet"], count=True, expose_value=False, callback=_verbosity("quiet", group),
                         help="fewer log messages (-q: warnings and errors only, no progress bar; -qq: errors only)")]


def config_file_option(fn):
    """``--config FILE``: the command's settings from a TOML/YAML file or a run's config.json
    (:mod:`creg.config.file`); options given on the command line override the file."""
    def load(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is None:
            return

        try:
            defaults = default_map(value, {p.name: p for p in ctx.command.params}, log=log)
        except ConfigFileError as e:
            fail(str(e))
        ctx.default_map = {**(ctx.default_map or {}), **defaults}

    return click.option("--config", "config", type=click.Path(dir_okay=False), default=None, is_eager=True,
                        expose_value=False, callback=load, metavar="FILE",
                        help="settings from a TOML/YAML file or a run's config.json; command-line options override it")(fn)



def _apply(fn: Callable, options: list[Callable]) -> Callable:
    for o in reversed(options):
        fn = o(fn)
    return fn


class Placement(click.ParamType):
    """``--device-map`` / ``--max-memory``, passed through (a string, or a dict from ``--config``):
    :class:`creg.config.run_config.RunConfig` checks them (creg.config.placement) and names the flag in its error."""

    def __init__(self, name: str) -> None:
        self.name = name

    def convert(self, value, param, ctx):
        return value


#: ``--device-map`` and ``--max-memory`` (model_options and ``creg reproduce``).
PLACEMENT_OPTIONS = (
    click.option("--device-map", "device_map", type=Placement("auto|balanced|balanced_low_0|sequential|JSON"),
                 default=None, help="spread the model's layers over several GPUs (and the CPU) with accelerate: "
                                    "a strategy or a JSON {module: device} (needs creg[big]; docs/distributed.md)"),
    click.option("--max-memory", "max_memory", type=Placement("DEVICE=SIZE,..."), default=None,
                 help="with --device-map: the most each device may hold, e.g. 0=70GiB,1=70GiB,cpu=200GiB (or JSON)"),
)


def placement_options(fn: Callable) -> Callable:
    """--device-map --max-memory."""
    return _apply(fn, list(PLACEMENT_OPTIONS))


def model_options(*, adapter_default: str | None = None, adapter_required: bool = False,
                  adapter_help: str = "preset (see `creg list`) or adapter plugin name") -> Callable:
    """--adapter --model --dtype --device --device-map --max-memory --prompt --adapter-opt --registry."""
    return lambda fn: _apply(fn, [
        click.option("--adapter", default=adapter_default, required=adapter_required, help=adapter_help,
                     show_default=adapter_default is not None),
        click.option("--model", default=None, help="hub id or local directory (overrides the preset's model)"),
        click.option("--dtype", default=None, type=click.Choice(DTYPES), help="default: the preset's (auto)"),
        click.option("--device", default=None, help="auto, cpu, cuda, cuda:1, mps, ... (default: the preset's, auto)"),
        *PLACEMENT_OPTIONS,
        click.option("--prompt", default=None, help="prompt template: A, B, C or a literal with {ref} and {tgt}"),
        click.option("--adapter-opt", "adapter_opt", multiple=True, metavar="KEY=VALUE",
                     help="adapter option over the preset's (see `creg list --options`)"),
        click.option("--registry", "registries", multiple=True, type=click.Path(dir_okay=False), help="extra registry file(s)"),
    ])


def source_options(fn: Callable) -> Callable:
    """--source-opt SOURCE.KEY=VALUE."""
    return click.option("--source-opt", "source_opt", multiple=True, metavar="SOURCE.KEY=VALUE",
                        help="source option, e.g. creg.layers=[-2] (see `creg list --options`)")(fn)


def bench_options(fn: Callable) -> Callable:
    """--bench --limit/--n --seed --data-dir --bench-opt."""
    return _apply(fn, [
        click.option("--bench", default=DEFAULT_BENCH, show_default=True, help="benchmark name (see `creg list`)"),
        click.option("--limit", "--n", "n", type=field_range("n"), default=field_default("n"),
                     help="at most this many samples (benchmark default if omitted); --n is its short alias"),
        click.option("--seed", type=int, default=field_default("seed"), show_default=True,
                     help="seed of the benchmark's sample choice, the random sources and the bootstrap CIs"),
        click.option("--data-dir", type=click.Path(file_okay=False), default=None, envvar=DATA_DIR_ENV,
                     help=f"dataset root (or ${DATA_DIR_ENV})"),
        click.option("--bench-opt", "bench_opt", multiple=True, metavar="KEY=VALUE",
                     help="benchmark option, e.g. split=zeroshot (see `creg list --options`)"),
    ])


def compass_options(fn: Callable) -> Callable:
    """--k --sigma-r --rho-r."""
    return _apply(fn, [
        click.option("--k", "k", type=field_range("k"), default=field_default("k"), show_default=True,
                     help="compass sectors"),
        click.option("--sigma-r", type=field_range("sigma_r", float), default=field_default("sigma_r"), show_default=True,
                     help="radial Gaussian width, in units of r_max (Eq. 5)"),
        click.option("--rho-r", type=field_range("rho_r", float), default=field_default("rho_r"), show_default=True,
                     help="radius of the compass disc r_max, in units of d_AB, the distance between A's and B's "
                          "centres (r_max = rho_r * d_AB, Eq. 5)"),
    ])


class BatchSize(click.ParamType):
    """``--batch-size N|auto``, passed through: :func:`run_config_from` checks it (creg.execution.batching.parse_batch_size)."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        return value


def execution_options(*, batch_size: bool = True) -> Callable:
    """--batch-size --threads."""
    opts = [click.option("--threads", type=field_range("threads"), default=field_default("threads"),
                         help="torch CPU threads (default: min(4, idle cores) or $OMP_NUM_THREADS; stored in config.json)")]
    if batch_size:
        opts.insert(0, click.option("--batch-size", type=BatchSize(), default=field_default("batch_size"), show_default=True,
                                    help="samples per forward pass, grouped by similar length; auto: the largest that "
                                         "fits the GPU (8 on the CPU) -- docs/speed.md"))
    return lambda fn: _apply(fn, opts)


def run_config_from(kw: dict[str, Any], **fields: Any) -> RunConfig:
    """A validated :class:`creg.config.run_config.RunConfig` from the common options in ``kw`` plus ``fields``,
    through the one resolver (:func:`creg.config.resolve.resolve_run_config`): an option left out takes the
    entry points' default; ``--adapter`` left at its default is chosen as everywhere (the toy model, or the
    adapter plugin ``--model``'s config.json names).

    A bad value exits with a one-line error (code 2) before anything is written.
    """

    values: dict[str, Any] = {}
    if kw.get("batch_size") is not None:

        try:
            kw = {**kw, "batch_size": parse_batch_size(kw["batch_size"])}
        except ValueError as e:
            fail(str(e))
    for key in ("adapter", "model", "dtype", "device", "prompt", "bench", "n", "seed", "data_dir", "k", "sigma_r",
                "rho_r", "batch_size", "threads", "device_map", "max_memory"):
        if key in kw and kw[key] is not None:
            values[key] = kw[key]
    ctx = click.get_current_context(silent=True)
    if ctx is not None and "adapter" in ctx.params and ctx.get_parameter_source("adapter") == click.core.ParameterSource.DEFAULT:
        values.pop("adapter", None)  # a shown default (e.g. qwen2vl-toy): the resolver chooses, --model included
    if "adapter_opt" in kw:
        values["adapter_options"] = parse_options(kw["adapter_opt"], keyed=False, flag="--adapter-opt")
    if "source_opt" in kw:
        values["source_options"] = parse_options(kw["source_opt"], keyed=True, flag="--source-opt")
    if "bench_opt" in kw:
        values["bench_options"] = parse_options(kw["bench_opt"], keyed=False, flag="--bench-opt")
    if "registries" in kw:
        values["registry"] = list(kw["registries"])
    values.update(fields)
    try:
        return resolve_run_config(values, get_plugins())
    except (RunError, RegistryError, UnknownName) as e:
        fail(str(e))


def warn_clashes(plugins) -> None:
    """Print every plugin name clash as a warning (``creg run`` and ``creg explain``)."""
    for clash in plugins.clashes:
        log(f"creg: warning: plugin name clash: {clash}")
