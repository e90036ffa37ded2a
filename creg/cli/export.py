"""``creg export RUN_DIR``: a run's tables as CSV or Parquet (:mod:`creg.report.export`)."""

from __future__ import annotations

import click

from creg.cli.common import fail, log
from creg.report.export import ExportUnavailable, export_run
from creg.store import RunDirError


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True,
              help="file format (parquet needs pyarrow)")
@click.option("--form", type=click.Choice(["wide", "long", "samples", "summary"]), default="wide", show_default=True,
              help="wide: a row per sample and source, sectors as columns; long: a row per sample, source and sector")
@click.option("--out", default=None, metavar="FILE",
              help="output file (default: RUN-FORM.FORMAT in the current directory; - for CSV on stdout)")
def export_cmd(run_dir: str, fmt: str, form: str, out: str | None) -> None:
    """Write a run's records as a tidy table for pandas, R, a spreadsheet (docs/user-guide.md)."""

    try:
        path = export_run(run_dir, out, fmt=fmt, form=form, log=log)
    except (ExportUnavailable, RunDirError, ValueError) as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot write the export: {e}")
    if path is not None:
        log(f"wrote {path}")
