"""``creg run``: a benchmark through a model and relevance sources."""

from __future__ import annotations

from pathlib import Path

import click

from creg.cli.common import (
    bench_options,
    compass_options,
    config_file_option,
    execution_options,
    fail,
    log,
    model_options,
    run_config_from,
    source_options,
    warn_clashes,
)
from creg.config.defaults import (
    DEFAULT_MODEL,
    DEFAULT_SOURCES,
    default_out,
    field_default,
)
from creg.config.hub import ModelUnavailable, check_available
from creg.config.presets import RegistryError
from creg.config.run_config import COS_OPERATORS
from creg.core.errors import RunError
from creg.core.logs import quiet
from creg.execution.backends import executor_for, world_from_env
from creg.execution.signals import Terminated
from creg.execution.threads import apply_threads
from creg.plugins.benchmark import DataInvalid
from creg.plugins.manager import PluginLoadError, UnknownName, get_plugins
from creg.plugins.options import OptionsError
from creg.store import RunDirError, RunStore


def _stored_threads(out_dir: Path) -> int | None:
    """The thread count of the run already in ``out_dir`` (a resume keeps it), or None."""

    if not out_dir.is_dir():
        return None
    try:
        stored = RunStore.read(out_dir).config.get("run", {}).get("threads")
    except RunDirError:
        return None
    return stored if isinstance(stored, int) and stored > 0 else None


@click.command("run")
@config_file_option
@model_options(adapter_help=f"preset (see `creg list`) or adapter plugin name; default {DEFAULT_MODEL} (with "
                           "--model alone: the adapter plugin its config.json names)")
@click.option("--source", "sources", default=",".join(DEFAULT_SOURCES), show_default=True,
              help="comma-separated source names")
@source_options
@bench_options
@compass_options
@execution_options()
@click.option("--out", type=click.Path(file_okay=False), default=None, help="run directory (default: runs/BENCH-ADAPTER-HASH)")
@click.option("--cos", is_flag=True, help="causal occlusion score (Eq. 8) per sample and source; needs a model")
@click.option("--cos-op", type=click.Choice(COS_OPERATORS), default=field_default("cos_op"), show_default=True,
              help="how --cos occludes a sector (docs/evaluation.md)")
@click.option("--overwrite", is_flag=True, help="discard an existing run in --out instead of continuing it")
@click.option("--save-maps/--no-save-maps", default=field_default("save_maps"), show_default=True,
              help="store every sample's relevance maps in the run (maps/*.npz), so that `creg report` and "
                   "`creg gallery` draw heatmaps without loading the model again")
@click.option("--max-failures", default=None, metavar="COUNT|FRACTION",
              help="stop when more samples fail than this: a count (20) or a fraction of the samples tried "
                   "(0.1, 10%); default 0.5, judged after 10 samples")
@click.option("--skip-unsupported", is_flag=True,
              help="drop (with a warning) the sources that need what the adapter does not provide, instead of "
                   "refusing the run")
@click.option("--control", "controls", multiple=True, type=click.Choice(["blank"]),
              help="also run every sample with its objects removed (same names and boxes) into RUN_DIR/blank and "
                   "report each source's peaks and DAE there (a position prior; docs/user-guide.md)")
@click.option("--no-progress", is_flag=True, help="no progress bar")
def run_cmd(sources, out, cos, cos_op, overwrite, save_maps, max_failures, skip_unsupported, no_progress, controls,
            **kw) -> None:
    """Explain a benchmark with one or more relevance sources; print the Table-1-style result."""
    from creg.plugins.adapter import LayerOutOfRange  # lazy: torch

    plugins = get_plugins()
    warn_clashes(plugins)

    try:
        world = world_from_env()  # set by torchrun: this process is one rank of a data-parallel run
    except ValueError as e:
        fail(str(e))
    if out is not None and not out.strip():
        fail("--out: an empty path; give a run directory, or leave --out out for runs/BENCH-ADAPTER-HASH")
    config = run_config_from(kw, sources=[s.strip() for s in sources.split(",") if s.strip()], cos=cos, cos_op=cos_op,
                             controls=list(dict.fromkeys(controls)), save_maps=save_maps)
    out_dir = Path(out) if out is not None else default_out(config)
    try:
        from creg.execution.runner import Runner  # lazy: guarded

        if config.threads is None and not overwrite:
            config.threads = _stored_threads(out_dir)
        config.threads = apply_threads(config.threads)
        runner = Runner(config, out_dir, plugins=plugins, overwrite=overwrite, progress=not no_progress and not quiet(), log=log,
                        max_failures=max_failures, skip_unsupported=skip_unsupported)
        if runner.adapter_config is not None:  # a hub id that is not here fails now, not after the run dir exists
            check_available(runner.adapter_config.model)
        result = executor_for(world).run(runner)  # one process, or one rank of a torchrun launch
    except (UnknownName, RunError, RegistryError, PluginLoadError, OptionsError, DataInvalid, ModelUnavailable,
            LayerOutOfRange) as e:
        fail(str(e))
    except OSError as e:  # a benchmark's data is missing, a full disk: the message says what and where
        fail(str(e))
    except KeyboardInterrupt as e:
        what, code = ("terminated (SIGTERM)", 143) if isinstance(e, Terminated) else ("interrupted", 130)
        fail(f"{what}; the partial run is in {out_dir}: re-run the same command to continue", code)
    if result is None:  # a rank other than 0 of a data-parallel run: rank 0 prints the merged result
        return
    click.echo(result.table)
    timing = time_line(result)
    if timing:
        click.echo(timing)
    click.echo(f"run directory: {result.out}  (records.jsonl, summary.json, table.md)")


def time_line(result) -> str:
    """``time: model load 3.1 s, batch-size probe 5.0 s, 200 samples in 45.2 s (4.42 samples/s)``."""
    t = getattr(result, "timing", None) or {}
    parts = []
    if "load" in t:
        parts.append(f"model load {t['load']:.1f} s")
    if t.get("batch_probe", 0) >= 0.05:
        parts.append(f"batch-size probe {t['batch_probe']:.1f} s")
    if "explain" in t and result.processed:
        rate = result.processed / t["explain"] if t["explain"] > 0 else float("inf")
        parts.append(f"{result.processed} samples in {t['explain']:.1f} s ({rate:.2f} samples/s)")
    return "time: " + ", ".join(parts) if parts else ""
