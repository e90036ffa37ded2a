"""``creg explain``: one image, one or more sources, one model load (a thin layer over
:meth:`creg.api.Model.explain`)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from creg.cli.common import (
    compass_options,
    execution_options,
    fail,
    log,
    model_options,
    run_config_from,
    source_options,
    warn_clashes,
)
from creg.config.defaults import DEFAULT_EXPLAIN_SOURCES, default_out, field_default
from creg.config.hub import ModelUnavailable, check_available
from creg.config.presets import RegistryError
from creg.core.box_formats import BOX_FORMATS
from creg.core.errors import RunError
from creg.core.logs import quiet
from creg.core.records import join
from creg.execution.threads import apply_threads
from creg.plugins.benchmark import DataInvalid
from creg.plugins.manager import PluginLoadError, UnknownName, get_plugins
from creg.plugins.options import OptionsError

#: ``--from``'s sources when --source is not given: CREG and the baseline it must beat.
FROM_SOURCES = "creg,random_relevance"


def _parse_box(value: str, box_format: str = "xyxy") -> list[float]:
    try:
        parts = [float(v) for v in value.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4:
        layout = {"xyxy": "x0,y0,x1,y1", "xywh": "x,y,w,h", "cxcywh": "cx,cy,w,h"}[box_format]
        raise click.BadParameter(f"{value!r}: expected {layout} in pixels")
    return parts


def _explain_rows(rows_file: str, image_root: str | None, box_format: str, sources: str, out: str | None, *,
                  fmt: str | None = None, dpi: int | None = None, **kw) -> None:
    """``creg explain --from ROWS``: the ``pairs`` benchmark through the model into a run directory,
    then its report (report.md, report.html, figures); prints the table."""
    from creg.execution.runner import Runner  # lazy: torch

    names = [s.strip() for s in sources.split(",") if s.strip()]
    if not names:
        raise click.BadParameter("name at least one source", param_hint="--source")
    bench_options = {"file": str(Path(rows_file).resolve()), "box_format": box_format}
    if image_root is not None:
        bench_options["image_root"] = str(Path(image_root).resolve())
    config = run_config_from(kw, sources=names, bench="pairs", bench_options=bench_options)
    plugins = get_plugins()
    warn_clashes(plugins)
    out_dir = Path(out) if out else default_out(config)
    try:
        config.threads = apply_threads(config.threads)
        runner = Runner(config, out_dir, plugins=plugins, progress=not quiet(), log=log)
        if runner.adapter_config is not None:
            check_available(runner.adapter_config.model)
        result = runner.run()
    except (UnknownName, RunError, RegistryError, PluginLoadError, OptionsError, DataInvalid, ModelUnavailable,
            OSError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail(f"interrupted; the partial run is in {out_dir}: re-run the same command to continue", 130)
    click.echo(result.table)
    from creg.experiments.heatmaps import recompute_maps  # lazy: torch
    from creg.report.report import build_report  # lazy: torch
    report = build_report(result.out, log=log, fmt=fmt or "png", dpi=dpi, recompute=recompute_maps)
    click.echo(f"run directory: {result.out}  (records.jsonl, summary.json, table.md, report.md"
               f"{', report.html' if report.get('html') else ''}, figures/)")


def explain_sample(sample, source, adapter, *, k: int = field_default("k"), sigma_r: float = field_default("sigma_r"),
                   rho_r: float = field_default("rho_r"), seed: int = field_default("seed"), adapter_name: str = "adapter"):
    """(record, compass) of one sample explained by one built source (0.1 helper), through the same
    pipeline as ``creg run`` (:func:`creg.explain.pipeline.explain_batch`); a plugin's failure raises naming
    the plugin. The API's :func:`creg.explain.samples.explain_samples` explains several sources and keeps the maps."""
    from creg.explain.pipeline import ScoringSettings, explain_batch  # lazy: torch

    result = explain_batch([sample], [source], adapter, ScoringSettings(k=k, sigma_r=sigma_r, rho_r=rho_r), seed=seed,
                           adapter_name=adapter_name)
    if result.errors:
        raise result.errors[0].error
    facts, rows = result.scored[0]
    return join(facts, rows[0]), result.compasses[(sample.id, source.name)]


def format_explanation(sample, record, source_name: str) -> str:
    """The text of one record (0.1 helper; ``creg explain`` prints :func:`creg.api.format_explanation`)."""

    from creg.api import Explanation  # lazy: torch
    from creg.api import format_explanation as fmt  # lazy: torch
    from creg.core.compass import sector_names  # lazy: torch
    from creg.explain.samples import SourceExplanation  # lazy: torch

    p = np.asarray(record.compass)
    s = SourceExplanation(source=source_name, relevance=np.zeros((1, 1)), cell_xy=np.zeros((1, 1, 2)), compass=p,
                          sectors=sector_names(p.size), peak_sector=record.peak_sector, peak_angle=record.peak_angle,
                          sector_angle=record.sector_angle, dae=record.dae, ea=record.ea, d_ab=0.0, r_max=0.0, sigma=0.0,
                          flags=list(record.flags), record=record)
    ex = Explanation(sample=sample, image=None, relation=record.relation, relation_given=True, sources={source_name: s},
                     logits=None if record.logits is None else np.asarray(record.logits), answer=record.pred,
                     correct=record.correct)
    return fmt(ex, s)


def _figure_path(out: str, fmt: str | None) -> Path:
    from creg.report.figures import FORMATS  # lazy: torch

    path = Path(out)
    suffix = path.suffix.lstrip(".").lower()
    if fmt is None:
        if suffix in FORMATS:
            return path
        return path.with_name(path.name + ".png")
    if suffix in FORMATS and suffix != fmt:
        raise click.BadParameter(f"--out {out} ends in .{suffix} but --format is {fmt}", param_hint="--out")
    return path if suffix == fmt else path.with_name(path.name + f".{fmt}")


@click.command("explain")
@model_options(adapter_help="preset or adapter plugin name (see `creg list`); default: the toy model, qwen2vl-toy")
@click.option("--image", "image_path", default=None, type=click.Path(dir_okay=False, exists=True),
              help="the image file (png, jpg, ...) to explain; or --from ROWS for many")
@click.option("--ref", "ref_name", default=None, help="name of the reference object A")
@click.option("--ref-box", default=None, help="A's box: four numbers in pixels, x0,y0,x1,y1 (see --box-format)")
@click.option("--tgt", "tgt_name", default=None, help="name of the target object B")
@click.option("--tgt-box", default=None, help="B's box: four numbers in pixels, x0,y0,x1,y1 (see --box-format)")
@click.option("--box-format", type=click.Choice(BOX_FORMATS), default="xyxy", show_default=True,
              help="layout of the box numbers: x0,y0,x1,y1 | x,y,w,h (COCO) | cx,cy,w,h")
@click.option("--from", "rows_file", default=None, type=click.Path(dir_okay=False, exists=True),
              help="explain every row of a CSV/JSONL/Parquet file (image, ref, ref_box, tgt, tgt_box, optional "
                   "relation) into a run directory with its report (the `pairs` benchmark; docs/benchmarks.md)")
@click.option("--image-root", default=None, type=click.Path(file_okay=False, exists=True),
              help="with --from: the folder the rows' image paths are relative to and must stay in (default: the file's folder)")
@click.option("--relation", type=click.Choice(["left", "right", "above", "below"]), default=None,
              help="ground truth (gt-targeted sources need it); default: the dominant axis of the boxes")
@click.option("--source", "sources", default=",".join(DEFAULT_EXPLAIN_SOURCES), show_default=True,
              help="comma-separated source names; all share one forward pass")
@source_options
@compass_options
@execution_options(batch_size=False)
@click.option("--out", type=click.Path(), default=None,
              help="write the figure here: per source the relevance heatmap over the image beside the compass rose "
                   "(with --from: the run directory, default runs/pairs-ADAPTER-HASH)")
@click.option("--format", "fmt", type=click.Choice(["png", "pdf", "svg"]), default=None,
              help="figure format (default: --out's suffix, else png; with --from: the report's figures)")
@click.option("--dpi", type=click.IntRange(min=20, max=1200), default=200, show_default=True, help="figure resolution")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of the text")
@click.option("--maps", is_flag=True, help="with --json: include each relevance map and its cell centres")
@click.pass_context
def explain_cmd(ctx, image_path, ref_name, ref_box, tgt_name, tgt_box, box_format, rows_file, image_root, relation,
                sources, out, fmt, dpi, as_json, maps, **kw) -> None:
    """Explain one image: the compass distribution per source, the model's answer and (with --out) a figure.
    With --from ROWS: every row of a file, into a run directory with metrics and a report."""
    one = {"--image": image_path, "--ref": ref_name, "--ref-box": ref_box, "--tgt": tgt_name, "--tgt-box": tgt_box,
           "--relation": relation}
    if rows_file is not None:
        given = [k for k, v in one.items() if v is not None]
        if given:
            raise click.UsageError(f"--from explains the rows of a file: drop {', '.join(given)} (each row names its image and objects)")
        if as_json or maps:
            raise click.UsageError("--json and --maps describe one image; --from writes a run directory "
                                   "(summary.json, records.jsonl: `creg export` for tables)")
        if ctx.get_parameter_source("sources") == click.core.ParameterSource.DEFAULT:
            sources = FROM_SOURCES
        explicit_dpi = ctx.get_parameter_source("dpi") != click.core.ParameterSource.DEFAULT
        return _explain_rows(rows_file, image_root, box_format, sources, out, fmt=fmt,
                             dpi=dpi if explicit_dpi else None, **kw)
    missing = [k for k, v in one.items() if v is None and k != "--relation"]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or give --from ROWS to explain a file of rows)")
    if image_root is not None:
        raise click.UsageError("--image-root goes with --from ROWS")
    from creg.api import ApiError, load_config  # lazy: torch
    from creg.explain.pipeline import PluginError  # lazy: torch
    from creg.plugins.adapter import LayerOutOfRange  # lazy: torch

    names = [s.strip() for s in sources.split(",") if s.strip()]
    if not names:
        raise click.BadParameter("name at least one source", param_hint="--source")
    rb, tb = _parse_box(ref_box, box_format), _parse_box(tgt_box, box_format)
    if out and Path(out).is_dir():
        raise click.BadParameter(f"{out} is a folder: give a figure file", param_hint="--out")
    figure = _figure_path(out, fmt) if out else None
    config = run_config_from(kw, sources=names)
    warn_clashes(get_plugins())
    try:
        apply_threads(config.threads)
        m = load_config(config)
        ex = m.explain(image_path, ref=(ref_name, rb), tgt=(tgt_name, tb), sources=names, relation=relation,
                       k=config.k, sigma_r=config.sigma_r, rho_r=config.rho_r, source_options=config.source_options,
                       box_format=box_format)
    except (ApiError, ModelUnavailable, UnknownName, RunError, RegistryError, OSError, OptionsError, PluginLoadError,
            PluginError, LayerOutOfRange) as e:
        fail(str(e))
    if not ex.relation_given and not as_json:
        of = " of" if ex.relation in ("left", "right") else ""
        log(f"ground truth taken from the boxes: B is {ex.relation}{of} A (set --relation to override)")
    if figure is not None:
        from creg.report.figures import PlotsUnavailable  # lazy: torch

        try:
            ex.plot(figure, dpi=dpi)
        except PlotsUnavailable as e:
            fail(str(e))
    if as_json:
        data = ex.to_dict(maps=maps)
        data["figure"] = str(figure) if figure is not None else None
        click.echo(json.dumps(data))
        return
    click.echo(str(ex))
    if figure is not None:
        click.echo(f"figure: {figure}")
