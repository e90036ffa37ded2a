"""``creg analyze flip|ablation|prompts`` (and ``randomize|layers``, creg.cli.analyze_model): analyses that run the model again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from creg.cli.analyze_model import layers_cmd, randomize_cmd
from creg.cli.common import (
    bench_options,
    execution_options,
    fail,
    log,
    model_options,
    run_config_from,
    source_options,
)
from creg.config.presets import RegistryError
from creg.config.run_config import check_prompt
from creg.core.errors import RunError
from creg.core.logs import quiet
from creg.core.prompts import PROMPTS
from creg.execution.threads import apply_threads
from creg.plugins.manager import PluginLoadError, UnknownName
from creg.plugins.options import OptionsError
from creg.store import write_grid_files
from creg.summary import breakdowns


@click.group("analyze")
def analyze_group() -> None:
    """Analyses that run the model again: flip equivariance, the ablation grid, the prompt sweep."""


@analyze_group.command("flip")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--no-progress", is_flag=True)
def flip_cmd(run_dir: str, no_progress: bool) -> None:
    """Re-run RUN_DIR's configuration on horizontally flipped images (into RUN_DIR/flip) and print
    the Pearson r between each compass and the mirrored flipped one (§6.1)."""
    from creg.experiments import variants  # lazy: torch

    try:
        variants.run_flipped(Path(run_dir), progress=not no_progress and not quiet(), log=log)
    except RunError as e:
        fail(str(e))
    result = breakdowns.flip_equivariance(breakdowns.load_records(Path(run_dir)), breakdowns.load_records(Path(run_dir) / "flip"))
    for name, f in result.items():
        r = "–" if f["r_mean"] is None else f"{f['r_mean']:+.3f}"
        click.echo(f"{name:<20} n={f['n']:<4} r(mean)={r}  peak agreement={f['peak_agreement']:.3f}")
    click.echo(f"`creg report {run_dir}` adds the flip section")


def _grid_options(fn):
    fn = click.option("--no-progress", is_flag=True)(fn)
    fn = click.option("--out", required=True, type=click.Path(file_okay=False),
                      help="one run directory per configuration goes here")(fn)
    for shared in (execution_options(), source_options, bench_options, model_options(adapter_required=True)):
        fn = shared(fn)
    return fn


def _base_config(kw: dict[str, Any], **extra):
    return run_config_from(kw, sources=["creg"], **extra)


def _run_grid(configs, kw, name: str, title: str, labels, accuracy: bool) -> None:
    from creg.experiments import variants  # lazy: torch
    from creg.report.report import variants_markdown  # lazy: torch

    out = Path(kw["out"])
    try:
        apply_threads(kw.get("threads"))
        summaries = variants.run_variants(configs, out, progress=not kw["no_progress"] and not quiet(), log=log)
    except (UnknownName, RunError, RegistryError, FileNotFoundError, OptionsError, PluginLoadError) as e:
        fail(str(e))
    rows = breakdowns.variants_table(summaries, labels=labels, accuracy=accuracy)
    text = variants_markdown(title, rows, accuracy=accuracy)
    write_grid_files(out, name, rows, text)
    click.echo(text)
    click.echo(f"wrote {out / (name + '.md')} and {name}.json; each configuration's run is in {out}/<name>")


@analyze_group.command("ablation")
@_grid_options
def ablation_cmd(**kw) -> None:
    """Table 5: CREG default, K = 4, single layer (-2), no contrastive target -- DAE and EA."""
    from creg.experiments import variants  # lazy: torch

    configs = variants.ablation_configs(_base_config(kw))
    _run_grid(configs, kw, "ablation", f"Ablation ({kw['bench']}, {kw['adapter']})", breakdowns.ABLATION_LABELS, accuracy=False)


@analyze_group.command("prompts")
@_grid_options
@click.option("--prompts", default="A,B,C", show_default=True, help="comma-separated templates")
def prompts_cmd(prompts: str, **kw) -> None:
    """Table 6: VLM accuracy and CREG's DAE for each prompt template (App. A.1)."""
    from creg.experiments import variants  # lazy: torch


    names = [p.strip() for p in prompts.split(",") if p.strip()]
    for p in names:
        try:
            check_prompt(p)
        except ValueError as e:
            fail(f"--prompts: {e}")
    labels = {p: f"{p}: {PROMPTS.get(p, p)[:60]}…" for p in names}
    configs = variants.prompt_configs(_base_config(kw), names)
    _run_grid(configs, kw, "prompts", f"Prompt sweep ({kw['bench']}, {kw['adapter']})", labels, accuracy=True)

analyze_group.add_command(randomize_cmd)
analyze_group.add_command(layers_cmd)
