"""``creg report RUN_DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import fail, log, parse_options


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--no-figures", is_flag=True, help="report.md and report.json only")
def report_cmd(run_dir: str, no_figures: bool) -> None:
    """Write RUN_DIR/report.md, report.json and figures/ (docs/evaluation.md explains them)."""
    from ..reporting.figures import PlotsUnavailable
    from ..reporting.report import ReportError, build_report
    from ..scoring.registry import MetricsMissing

    try:
        try:
            report = build_report(Path(run_dir), figures=not no_figures, log=log)
        except PlotsUnavailable as e:
            log(f"creg: {e}; writing the report without figures")
            report = build_report(Path(run_dir), figures=False, log=log)
    except (ReportError, MetricsMissing) as e:
        fail(str(e))
    click.echo(f"wrote {Path(run_dir) / 'report.md'}, report.json" +
               (f" and {len(report['figures'])} figures in {Path(run_dir) / 'figures'}" if report["figures"] else ""))


