"""``creg analyze flip|ablation|prompts`` (and ``randomize|layers``, creg.cli.analyze_model): analyses that run the model again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..logs import quiet
from .common import bench_options, execution_options, fail, log, model_options, run_config_from, source_options


@click.group("analyze")
def analyze_group() -> None:
    """Analyses that run the model again: flip equivariance, the ablation grid, the prompt sweep."""


@analyze_group.command("flip")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--no-progress", is_flag=True)
def flip_cmd(run_dir: str, no_progress: bool) -> None:
    """Re-run RUN_DIR's configuration on horizontally flipped images (into RUN_DIR/flip) and print
    the Pearson r between each compass and the mirrored flipped one (§6.1)."""
    from ..reporting import analysis
    from ..run_config import RunError

    try:
        analysis.run_flipped(Path(run_dir), progress=not no_progress and not quiet(), log=log)
    except RunError as e:
        fail(str(e))
    result = analysis.flip_equivariance(analysis.load_records(Path(run_dir)), analysis.load_records(Path(run_dir) / "flip"))
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
    from ..reporting import analysis
    from ..plugins import UnknownName
    from ..registry import RegistryError
    from ..reporting.report import variants_markdown
    from ..options import OptionsError
    from ..plugins import PluginLoadError
    from ..run_config import RunError, apply_threads
    from ..store import write_grid_files

    out = Path(kw["out"])
    try:
        apply_threads(kw.get("threads"))
        summaries = analysis.run_variants(configs, out, progress=not kw["no_progress"] and not quiet(), log=log)
    except (UnknownName, RunError, RegistryError, FileNotFoundError, OptionsError, PluginLoadError) as e:
        fail(str(e))
    rows = analysis.variants_table(summaries, labels=labels, accuracy=accuracy)
    text = variants_markdown(title, rows, accuracy=accuracy)
    write_grid_files(out, name, rows, text)
    click.echo(text)
    click.echo(f"wrote {out / (name + '.md')} and {name}.json; each configuration's run is in {out}/<name>")


@analyze_group.command("ablation")
@_grid_options
def ablation_cmd(**kw) -> None:
    """Table 5: CREG default, K = 4, single layer (-2), no contrastive target -- DAE and EA."""
    from ..reporting import analysis

    configs = analysis.ablation_configs(_base_config(kw))
    _run_grid(configs, kw, "ablation", f"Ablation ({kw['bench']}, {kw['adapter']})", analysis.ABLATION_LABELS, accuracy=False)


@analyze_group.command("prompts")
@_grid_options
@click.option("--prompts", default="A,B,C", show_default=True, help="comma-separated templates")
def prompts_cmd(prompts: str, **kw) -> None:
    """Table 6: VLM accuracy and CREG's DAE for each prompt template (App. A.1)."""
    from ..reporting import analysis
    from ..prompts import PROMPTS

    from ..run_config import check_prompt

    names = [p.strip() for p in prompts.split(",") if p.strip()]
    for p in names:
        try:
            check_prompt(p)
        except ValueError as e:
            fail(f"--prompts: {e}")
    labels = {p: f"{p}: {PROMPTS.get(p, p)[:60]}…" for p in names}
    configs = analysis.prompt_configs(_base_config(kw), names)
    _run_grid(configs, kw, "prompts", f"Prompt sweep ({kw['bench']}, {kw['adapter']})", labels, accuracy=True)
from . import analyze_model  # noqa: E402,F401 - registers `analyze randomize` and `analyze layers`
