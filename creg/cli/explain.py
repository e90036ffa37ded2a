"""``creg explain``: one image, one or more sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import fail, log, parse_options


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
    """(record, compass) of one sample explained by one source, through the same pipeline as
    ``creg run`` (:func:`creg.scoring.explain_batch`); a plugin's failure raises naming the plugin."""
    from ..scoring.pipeline import ScoringSettings, explain_batch
    from ..store import join

    result = explain_batch([sample], [source], adapter, ScoringSettings(k=k, sigma_r=sigma_r, rho_r=rho_r), seed=seed,
                           adapter_name=adapter_name)
    if result.errors:
        raise result.errors[0].error
    facts, rows = result.scored[0]
    return join(facts, rows[0]), result.compasses[(sample.id, source.name)]


def format_explanation(sample, record, source_name: str) -> str:
    """The text ``creg explain`` prints: one bar per sector, the peak, the truth and the model's answer."""
    import numpy as np

    from ..reporting.figures import sector_names
    from ..sample import RELATIONS

    p = np.asarray(record.compass)
    names = sector_names(p.size)
    lines = [f"Where is the {sample.tgt_name} relative to the {sample.ref_name}?  (source {source_name}, K={p.size})"]
    for name, v in zip(names, p):
        lines.append(f"  {name:>4} {v:6.3f} {'█' * int(round(40 * v / max(p.max(), 1e-12)))}")
    lines.append(f"peak: {names[record.peak_sector]} (sector {record.peak_sector}), evidence points at {record.peak_angle:.1f}°")
    dae = f", DAE {record.dae:.1f}°" if record.dae is not None else ""
    lines.append(f"true A→B: {record.true_angle:.1f}° ({record.relation}){dae}")
    if record.logits is not None:
        probs = np.exp(np.asarray(record.logits) - np.max(record.logits))
        probs /= probs.sum()
        lines.append(f"model: {record.pred}  (" + ", ".join(f"{r} {q:.2f}" for r, q in zip(RELATIONS, probs)) + ")")
    else:
        lines.append("model: – (no model)")
    if record.flags:
        lines.append(f"flags: {', '.join(record.flags)}")
    return "\n".join(lines)


@click.command("explain")
@click.option("--adapter", default="none", show_default=True, help="preset or adapter plugin name (see `creg list`)")
@click.option("--model", default=None, help="hub id or local directory (overrides the preset's model)")
@click.option("--image", "image_path", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--ref", "ref_name", required=True, help="name of the reference object A")
@click.option("--ref-box", required=True, help="A's box x0,y0,x1,y1 (pixels)")
@click.option("--tgt", "tgt_name", required=True, help="name of the target object B")
@click.option("--tgt-box", required=True, help="B's box x0,y0,x1,y1 (pixels)")
@click.option("--relation", type=click.Choice(["left", "right", "above", "below"]), default=None,
              help="ground truth (gt-targeted sources need it); default: the dominant axis of the boxes")
@click.option("--source", default="creg", show_default=True)
@click.option("--source-opt", multiple=True, help="SOURCE.KEY=VALUE")
@click.option("--k", "k", type=int, default=8, show_default=True)
@click.option("--prompt", default=None)
@click.option("--dtype", default=None, type=click.Choice(["auto", "float32", "bfloat16", "float16"]))
@click.option("--device", default=None)
@click.option("--registry", "registries", multiple=True, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="write the figure (scene + compass rose) here")
def explain_cmd(adapter, model, image_path, ref_name, ref_box, tgt_name, tgt_box, relation, source, source_opt, k,
                prompt, dtype, device, registries, out) -> None:
    """Explain one image: the compass distribution, the model's answer and (with --out) a figure."""
    from PIL import Image

    from .common import parse_options
    from ..plugins import UnknownName, get_plugins
    from ..registry import RegistryError, load_registry
    from ..run_config import RunConfig, RunError, build_sources, resolve_adapter
    from ..sample import Box, InvalidSample, make_sample, relation_from_boxes
    from ..scoring.pipeline import PluginError

    rb, tb = Box(**dict(zip(("x0", "y0", "x1", "y1"), _parse_box(ref_box)))), Box(**dict(zip(("x0", "y0", "x1", "y1"), _parse_box(tgt_box))))
    if relation is None:
        dx, dy = tb.center[0] - rb.center[0], tb.center[1] - rb.center[1]
        relation = relation_from_boxes(rb, tb, ratio=1.0) or ("right" if dx >= 0 else "left")
        of = " of" if relation in ("left", "right") else ""
        log(f"ground truth taken from the boxes: B is {relation}{of} A (set --relation to override)")
    try:
        with Image.open(image_path) as im:
            size = im.size
        sample = make_sample(id=Path(image_path).stem, image=Path(image_path), image_size=size, ref_name=ref_name,
                             ref_box=rb, tgt_name=tgt_name, tgt_box=tb, relation=relation)
        config = RunConfig(adapter=adapter, model=model, dtype=dtype, device=device, prompt=prompt, sources=[source],
                           source_options=parse_options(source_opt, keyed=True), k=k, registry=list(registries))
        plugins = get_plugins()
        adapter_cls, adapter_config = resolve_adapter(config, plugins, load_registry(config.registry))
        src = build_sources(config, plugins, adapter_cls is not None)[0]
        vlm = adapter_cls.load(adapter_config) if adapter_cls is not None else None
        record, _ = explain_sample(sample, src, vlm, k=k, adapter_name=adapter)
    except (UnknownName, RunError, RegistryError, InvalidSample, OSError, PluginError) as e:
        fail(str(e))
    click.echo(format_explanation(sample, record, source))
    if out:
        from ..reporting.figures import PlotsUnavailable, explain_figure

        try:
            explain_figure(Path(out), sample.load_image(), sample.summary(), record.model_dump(),
                           title=f"{source}: where is the {tgt_name} relative to the {ref_name}?")
        except PlotsUnavailable as e:
            fail(str(e))
        click.echo(f"figure: {out}")


