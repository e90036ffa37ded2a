"""``creg report RUN_DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import fail, log, parse_options


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--no-figures", is_flag=True, help="report.md and report.json only")
@click.option("--format", "fmt", type=click.Choice(["png", "pdf", "svg"]), default="png", show_default=True,
              help="figure format")
@click.option("--dpi", type=click.IntRange(min=20, max=1200), default=200, show_default=True, help="figure resolution")
@click.option("--html/--no-html", default=True, show_default=True, help="also write report.html (one self-contained file)")
@click.option("--heatmaps/--no-heatmaps", default=True, show_default=True,
              help="example figures show relevance heatmaps (reloads the run's model to recompute the examples' maps)")
def report_cmd(run_dir: str, no_figures: bool, fmt: str, dpi: int, html: bool, heatmaps: bool) -> None:
    """Write RUN_DIR/report.md, report.json, report.html and figures/ (docs/evaluation.md explains them)."""
    from ..reporting.figures import PlotsUnavailable
    from ..reporting.report import ReportError, build_report
    from ..scoring.registry import MetricsMissing

    kw = dict(log=log, fmt=fmt, dpi=dpi, html=html, heatmaps=heatmaps)
    try:
        try:
            report = build_report(Path(run_dir), figures=not no_figures, **kw)
        except PlotsUnavailable as e:
            log(f"creg: {e}; writing the report without figures")
            report = build_report(Path(run_dir), figures=False, **kw)
    except (ReportError, MetricsMissing) as e:
        fail(str(e))
    for w in report["summary"].get("warnings") or []:
        log(f"warning: {w['message']}")
    made = [str(Path(run_dir) / "report.md"), "report.json"] + (["report.html"] if report.get("html") else [])
    click.echo(f"wrote {', '.join(made)}" +
               (f" and {len(report['figures'])} figures in {Path(run_dir) / 'figures'}" if report["figures"] else ""))
