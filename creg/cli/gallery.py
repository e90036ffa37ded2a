"""``creg gallery RUN_DIR``: every sample and source of a run side by side, as one HTML page."""

from __future__ import annotations

import click

from creg.cli.common import fail, log
from creg.report.gallery import DEFAULT_MAX_SAMPLES, build_gallery
from creg.store import RunDirError


@click.command("gallery")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--max-samples", type=click.IntRange(min=1), default=None,
              help="samples to show (default 60; beyond it every source's worst cases and the wrong answers come first)")
@click.option("--all", "all_samples", is_flag=True, help="show every sample (a large run makes a large page)")
@click.option("--dpi", type=click.IntRange(min=20, max=300), default=80, show_default=True, help="resolution of each image")
def gallery_cmd(run_dir: str, max_samples: int | None, all_samples: bool, dpi: int) -> None:
    """Write RUN_DIR/gallery.html: per sample, every source's heatmap and compass rose on the same image,
    filterable by class, answer, source and DAE, with the worst cases one click away. Heatmaps come from
    the maps the run stored (creg run --save-maps, the default); the model is not loaded."""
    from creg.report.figures import PlotsUnavailable  # lazy: torch

    if all_samples and max_samples is not None:
        fail("--all and --max-samples both given: use one")
    limit = None if all_samples else (max_samples or DEFAULT_MAX_SAMPLES)
    try:
        out = build_gallery(run_dir, max_samples=limit, dpi=dpi, log=log)
    except (RunDirError, PlotsUnavailable) as e:
        fail(str(e))
    for note in out["notes"]:
        log(f"note: {note}")
    click.echo(f"wrote {out['path']} ({out['samples']} samples x {len(out['sources'])} sources, "
               f"{out['with_maps']} with stored maps)")
