"""``creg report RUN_DIR...``: one run's report, or several runs side by side."""

from __future__ import annotations

import glob
from pathlib import Path

import click

from creg.cli.common import fail, log
from creg.plugins.manager import PluginLoadError
from creg.plugins.metric import metric_registry
from creg.report.compare import compare_markdown, compare_runs, default_out
from creg.store import RunDirError, RunStore, write_grid_files


def resolve_run_dirs(args: tuple[str, ...]) -> list[Path]:
    """Each argument is a run directory, or a glob pattern (quoted, so the shell leaves it to creg)
    standing for its newest matching run directory (the one written last)."""

    out: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            out.append(path)
            continue
        if not glob.has_magic(arg):
            fail(f"{arg}: no such run directory")
        matches = [Path(m) for m in glob.glob(arg) if Path(m).is_dir() and RunStore.is_run_dir(m)]
        if not matches:
            fail(f"{arg}: no run directory matches this pattern")
        newest = max(matches, key=lambda p: (p.stat().st_mtime, str(p)))
        if len(matches) > 1:
            log(f"creg: {arg} matches {len(matches)} runs; using the newest, {newest}")
        out.append(newest)
    return out


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...")
@click.option("--no-figures", is_flag=True, help="report.md and report.json only")
@click.option("--format", "fmt", type=click.Choice(["png", "pdf", "svg"]), default="png", show_default=True,
              help="figure format")
@click.option("--dpi", type=click.IntRange(min=20, max=1200), default=200, show_default=True, help="figure resolution")
@click.option("--html/--no-html", default=True, show_default=True, help="also write report.html (one self-contained file)")
@click.option("--heatmaps/--no-heatmaps", default=True, show_default=True,
              help="example figures show relevance heatmaps (from the maps the run stored; a run made with "
                   "--no-save-maps reloads its model to recompute them)")
@click.option("--baseline", default=None, metavar="SOURCE",
              help="the pairwise tests' reference: each source is compared with it, every pair in an appendix "
                   "(default: creg when the run has it, else its first source)")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="several runs: where comparison.md/.json go (default: next to the first run, compare-HASH)")
def report_cmd(run_dirs: tuple[str, ...], no_figures: bool, fmt: str, dpi: int, html: bool, heatmaps: bool,
               baseline: str | None, out: str | None) -> None:
    """Write RUN_DIR/report.md, report.json, report.html and figures/ (docs/evaluation.md explains them).

    A RUN_DIR may be a quoted glob pattern ('runs/synthetic-*'): its newest matching run. With several
    runs, write one side-by-side comparison instead (the first run is the reference of the paired tests).
    """
    from creg.report.figures import PlotsUnavailable  # lazy: torch
    from creg.report.report import ReportError, build_report  # lazy: torch

    dirs = resolve_run_dirs(run_dirs)
    if len(dirs) > 1:
        if baseline is not None:
            fail("--baseline SOURCE applies to one run's sources; with several runs the first run is the reference")
        _compare(dirs, out)
        return
    run_dir = dirs[0]
    from creg.experiments.heatmaps import recompute_maps  # lazy: torch
    kw = dict(log=log, fmt=fmt, dpi=dpi, html=html, heatmaps=heatmaps, baseline=baseline, recompute=recompute_maps)
    try:
        try:
            report = build_report(run_dir, figures=not no_figures, **kw)
        except PlotsUnavailable as e:
            log(f"creg: {e}; writing the report without figures")
            report = build_report(run_dir, figures=False, **kw)
    except (ReportError, PluginLoadError) as e:  # creg's own metrics missing, or a broken metric plugin
        fail(str(e))
    except OSError as e:  # a read-only run directory, a full disk, records.jsonl a folder: one line, as `creg run`
        fail(f"cannot read or write {e.filename or run_dir} (the report of {run_dir}): {e.strerror or e}")
    for w in report["summary"].get("warnings") or []:
        log(f"warning: {w['message']}")
    made = [str(run_dir / "report.md"), "report.json"] + (["report.html"] if report.get("html") else [])
    click.echo(f"wrote {', '.join(made)}" +
               (f" and {len(report['figures'])} figures in {run_dir / 'figures'}" if report["figures"] else ""))


def _compare(dirs: list[Path], out: str | None) -> None:

    try:
        metrics = metric_registry()
        comparison = compare_runs(dirs, metrics=metrics, log=log)
        text = compare_markdown(comparison, metrics)
        root = Path(out) if out else default_out(dirs)
        json_path, md_path = write_grid_files(root, "comparison", comparison, text)
        from creg.report.cross_run import write_comparison_page  # lazy: guarded

        extra = write_comparison_page(root, comparison, metrics, log=log)
    except (RunDirError, PluginLoadError) as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot write the comparison: {e}")
    click.echo(text, nl=False)
    click.echo(f"wrote {md_path}, {', '.join([json_path.name, *extra])}")
