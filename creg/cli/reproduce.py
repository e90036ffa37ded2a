"""``creg reproduce``: the paper's protocol (Tables 1, 3-6, COS with every operator and control,
per class, flip equivariance) into one directory, with one report beside the published numbers."""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import ValidationError

from creg.cli.common import fail, log, placement_options
from creg.config.defaults import (
    DATA_DIR_ENV,
    DEFAULT_MODEL,
    DEFAULT_REPRODUCE_BENCHES,
    default_reproduce_out,
    field_default,
)
from creg.config.presets import RegistryError, load_registry
from creg.config.resolve import choose_adapter
from creg.config.run_config import DTYPES, config_error_message
from creg.core.errors import RunError
from creg.plugins.manager import PluginLoadError, UnknownName, get_plugins


@click.command("reproduce")
@click.option("--adapter", default=DEFAULT_MODEL, show_default=True,
              help="preset (see `creg list`) or adapter plugin name, e.g. qwen2vl-7b; the default is creg run's, the toy model")
@click.option("--model", default=None, help="hub id or local directory (overrides the preset's model)")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, envvar=DATA_DIR_ENV,
              help=f"dataset root for VSR and COCO-Pairs (or ${DATA_DIR_ENV}); without it they are skipped")
@click.option("--bench", "benches", default=",".join(DEFAULT_REPRODUCE_BENCHES), show_default=True,
              help="comma-separated benchmarks (the paper's: vsr,coco_pairs)")
@click.option("--sizes", type=click.Choice(["paper", "quick"]), default=None,
              help="samples per step: paper (Table 1 and COS 240 VSR / 300 COCO-Pairs, Table 5 60, Table 6 30) or "
                   "quick (Table 1 200, COS 60, 60, 30). Default: paper when a benchmark reads a dataset, "
                   "quick on generated scenes (synthetic)")
@click.option("--limit", "--n", "limit", type=click.IntRange(min=1), default=None,
              help="at most this many samples per run (caps --sizes)")
@click.option("--seed", type=int, default=field_default("seed"), show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="reproduction directory (default runs/reproduce-ADAPTER)")
@click.option("--batch-size", type=int, default=field_default("batch_size"), show_default=True)
@click.option("--dtype", default=None, type=click.Choice(DTYPES))
@click.option("--device", default=None)
@placement_options
@click.option("--registry", "registries", multiple=True, type=click.Path(dir_okay=False), help="extra registry file(s)")
@click.option("--figures", is_flag=True, help="also write each Table 1 run's report with figures")
@click.option("--dry-run", is_flag=True, help="print the plan and exit")
@click.option("--no-progress", is_flag=True)
@click.pass_context
def reproduce_cmd(ctx, adapter, model, data_dir, benches, sizes, limit, seed, out, batch_size, dtype, device, device_map,
                  max_memory, registries, figures, dry_run, no_progress) -> None:
    """Run the paper's protocol into one directory (sub-runs inside, resumable) and write report.md
    setting our numbers beside the paper's."""
    from creg.experiments.reproduce import plan_reproduction, run_plan  # lazy: torch


    if ctx.get_parameter_source("adapter") == click.core.ParameterSource.DEFAULT:
        adapter = None  # chosen as every entry point chooses: the toy model, or the plugin --model's config.json names
    try:
        plugins = get_plugins()
        adapter = choose_adapter(adapter, model, load_registry(list(registries)), plugins.names("adapter"))
    except (RunError, RegistryError) as e:
        fail(str(e))
    out_dir = Path(out) if out else default_reproduce_out(adapter)
    try:
        plan = plan_reproduction(out_dir, adapter=adapter, benchmarks=[b.strip() for b in benches.split(",") if b.strip()],
                                 data_dir=data_dir, limit=limit, sizes=sizes, seed=seed, model=model, dtype=dtype, device=device,
                                 batch_size=batch_size, registry=list(registries), plugins=plugins,
                                 **{k: v for k, v in (("device_map", device_map), ("max_memory", max_memory)) if v is not None})
    except ValidationError as e:
        fail(config_error_message(e))
    except (RunError, ValueError) as e:
        fail(str(e).splitlines()[0])
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    if dry_run:
        click.echo("\n".join(plan.describe()))
        return
    try:
        from creg.core.logs import quiet  # lazy: guarded

        result = run_plan(plan, progress=not no_progress and not quiet(), figures=figures, log=log)
    except (UnknownName, RunError, RegistryError, PluginLoadError, OSError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail(f"interrupted; re-run the same command to continue in {out_dir}", 130)
    for w in result.report["warnings"]:
        click.echo(f"warning: {w['message']}", err=True)
    click.echo(result.text)
    click.echo(f"reproduction directory: {out_dir}  (report.md, report.json; one run directory per step) "
               f"-- {result.elapsed_s:.0f} s")
