"""``creg explain``: one image, one or more sources, one model load (a thin layer over
:meth:`creg.api.Model.explain`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import (compass_options, execution_options, fail, log, model_options, run_config_from, source_options,
                     warn_clashes)

DEFAULT_SOURCES = "creg"


def _parse_box(value: str) -> list[float]:
    try:
        parts = [float(v) for v in value.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4:
        raise click.BadParameter(f"{value!r}: expected x0,y0,x1,y1 in pixels")
    return parts


def explain_sample(sample, source, adapter, *, k: int = 8, sigma_r: float = 0.6, rho_r: float = 2.0, seed: int = 0,
                   adapter_name: str = "adapter"):
    """(record, compass) of one sample explained by one built source (0.1 helper), through the same
    pipeline as ``creg run`` (:func:`creg.scoring.explain_batch`); a plugin's failure raises naming
    the plugin. The API's :func:`creg.api.explain_samples` explains several sources and keeps the maps."""
    from ..scoring.pipeline import ScoringSettings, explain_batch
    from ..store import join

    result = explain_batch([sample], [source], adapter, ScoringSettings(k=k, sigma_r=sigma_r, rho_r=rho_r), seed=seed,
                           adapter_name=adapter_name)
    if result.errors:
        raise result.errors[0].error
    facts, rows = result.scored[0]
    return join(facts, rows[0]), result.compasses[(sample.id, source.name)]


def format_explanation(sample, record, source_name: str) -> str:
    """The text of one record (0.1 helper; ``creg explain`` prints :func:`creg.api.format_explanation`)."""
    import numpy as np

    from ..api import Explanation, SourceExplanation, format_explanation as fmt
    from ..reporting.figures import sector_names

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
    from ..reporting.figures import FORMATS

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
@click.option("--image", "image_path", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--ref", "ref_name", required=True, help="name of the reference object A")
@click.option("--ref-box", required=True, help="A's box x0,y0,x1,y1 (pixels)")
@click.option("--tgt", "tgt_name", required=True, help="name of the target object B")
@click.option("--tgt-box", required=True, help="B's box x0,y0,x1,y1 (pixels)")
@click.option("--relation", type=click.Choice(["left", "right", "above", "below"]), default=None,
              help="ground truth (gt-targeted sources need it); default: the dominant axis of the boxes")
@click.option("--source", "sources", default=DEFAULT_SOURCES, show_default=True,
              help="comma-separated source names; all share one forward pass")
@source_options
@compass_options
@execution_options(batch_size=False)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="write the figure here: per source the relevance heatmap over the image beside the compass rose")
@click.option("--format", "fmt", type=click.Choice(["png", "pdf", "svg"]), default=None,
              help="figure format (default: --out's suffix, else png)")
@click.option("--dpi", type=click.IntRange(min=20, max=1200), default=200, show_default=True, help="figure resolution")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of the text")
@click.option("--maps", is_flag=True, help="with --json: include each relevance map and its cell centres")
def explain_cmd(image_path, ref_name, ref_box, tgt_name, tgt_box, relation, sources, out, fmt, dpi, as_json, maps,
                **kw) -> None:
    """Explain one image: the compass distribution per source, the model's answer and (with --out) a figure."""
    from ..adapter import LayerOutOfRange
    from ..api import DEFAULT_MODEL, ApiError, load
    from ..hub import ModelUnavailable
    from ..options import OptionsError
    from ..plugins import PluginLoadError, UnknownName, get_plugins
    from ..registry import RegistryError, load_registry
    from ..run_config import RunError, apply_threads
    from ..scoring.pipeline import PluginError

    names = [s.strip() for s in sources.split(",") if s.strip()]
    if not names:
        raise click.BadParameter("name at least one source", param_hint="--source")
    rb, tb = _parse_box(ref_box), _parse_box(tgt_box)
    figure = _figure_path(out, fmt) if out else None
    try:
        if kw["adapter"] is None:
            kw["adapter"] = DEFAULT_MODEL if DEFAULT_MODEL in load_registry(kw["registries"]) else "none"
    except RegistryError as e:
        fail(str(e))
    config = run_config_from(kw, sources=names)
    warn_clashes(get_plugins())
    try:
        apply_threads(config.threads)
        common = dict(dtype=config.dtype, device=config.device, prompt=config.prompt, registry=config.registry,
                      **config.adapter_options, **config.placement())
        m = load(config.model, adapter=config.adapter, **common) if config.model else load(config.adapter, **common)
        if m.adapter is None and (config.adapter_options or config.placement()):
            flag = "--adapter-opt" if config.adapter_options else "--" + next(iter(config.placement())).replace("_", "-")
            raise RunError(f"{flag} given but {config.adapter!r} runs no model")
        ex = m.explain(image_path, ref=(ref_name, rb), tgt=(tgt_name, tb), sources=names, relation=relation,
                       k=config.k, sigma_r=config.sigma_r, rho_r=config.rho_r, source_options=config.source_options)
    except (ApiError, ModelUnavailable, UnknownName, RunError, RegistryError, OSError, OptionsError, PluginLoadError,
            PluginError, LayerOutOfRange) as e:
        fail(str(e))
    if not ex.relation_given and not as_json:
        of = " of" if ex.relation in ("left", "right") else ""
        log(f"ground truth taken from the boxes: B is {ex.relation}{of} A (set --relation to override)")
    if figure is not None:
        from ..reporting.figures import PlotsUnavailable

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
