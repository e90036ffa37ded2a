"""The evaluation commands: ``creg report``, ``creg explain`` and ``creg analyze flip|ablation|prompts``.

Registered on the core command group by :mod:`creg.cli`; heavy imports happen inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"creg: {message}", err=True)
    sys.exit(code)


def _log(message: str) -> None:
    click.echo(message, err=True)


# -- creg report ----------------------------------------------------------------------------------

@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--no-figures", is_flag=True, help="report.md and report.json only")
def report_cmd(run_dir: str, no_figures: bool) -> None:
    """Write RUN_DIR/report.md, report.json and figures/ (docs/evaluation.md explains them)."""
    from .figures import PlotsUnavailable
    from .report import ReportError, build_report

    try:
        try:
            report = build_report(Path(run_dir), figures=not no_figures, log=_log)
        except PlotsUnavailable as e:
            _log(f"creg: {e}; writing the report without figures")
            report = build_report(Path(run_dir), figures=False, log=_log)
    except ReportError as e:
        _fail(str(e))
    click.echo(f"wrote {Path(run_dir) / 'report.md'}, report.json" +
               (f" and {len(report['figures'])} figures in {Path(run_dir) / 'figures'}" if report["figures"] else ""))


# -- creg explain ---------------------------------------------------------------------------------

def _parse_box(value: str) -> list[float]:
    try:
        parts = [float(v) for v in value.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4:
        raise click.BadParameter(f"{value!r}: expected x0,y0,x1,y1 in pixels")
    return parts


def explain_sample(sample, source, adapter, *, k: int = 8, sigma_r: float = 0.6, rho_r: float = 2.0, seed: int = 0):
    """(record, compass) of one sample explained by one source (the model's forward, if any, runs once)."""
    from .compass import project_to_compass
    from .explain import ExplainContext, merge_requests
    from .adapter import ForwardRequest
    from .runner import record_for

    request = merge_requests([source.request()]) if adapter is not None and source.needs_model else ForwardRequest()
    ctx = ExplainContext([sample], adapter, request, seed=seed)
    rmap = source.explain(ctx)[0]
    compass = project_to_compass(rmap.values, rmap.ref_box or sample.ref_box, sample.tgt_box, sample.image_size,
                                 k=k, sigma_r=sigma_r, rho_r=rho_r, cell_xy=rmap.cell_xy, rng=ctx.rng(0, f"tie/{source.name}"))
    logits = ctx.output.class_logits.detach().float().cpu().numpy()[0] if adapter is not None else None
    return record_for(sample, source.name, compass, logits), compass


def format_explanation(sample, record, source_name: str) -> str:
    """The text ``creg explain`` prints: one bar per sector, the peak, the truth and the model's answer."""
    import numpy as np

    from .figures import sector_names
    from .sample import RELATIONS

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

    from .cli import _parse_options
    from .plugins import UnknownName, get_plugins
    from .registry import RegistryError, load_registry
    from .runner import RunConfig, RunError, build_sources, resolve_adapter
    from .sample import Box, InvalidSample, make_sample, relation_from_boxes

    rb, tb = Box(**dict(zip(("x0", "y0", "x1", "y1"), _parse_box(ref_box)))), Box(**dict(zip(("x0", "y0", "x1", "y1"), _parse_box(tgt_box))))
    if relation is None:
        dx, dy = tb.center[0] - rb.center[0], tb.center[1] - rb.center[1]
        relation = relation_from_boxes(rb, tb, ratio=1.0) or ("right" if dx >= 0 else "left")
        of = " of" if relation in ("left", "right") else ""
        _log(f"ground truth taken from the boxes: B is {relation}{of} A (set --relation to override)")
    try:
        with Image.open(image_path) as im:
            size = im.size
        sample = make_sample(id=Path(image_path).stem, image=Path(image_path), image_size=size, ref_name=ref_name,
                             ref_box=rb, tgt_name=tgt_name, tgt_box=tb, relation=relation)
        config = RunConfig(adapter=adapter, model=model, dtype=dtype, device=device, prompt=prompt, sources=[source],
                           source_options=_parse_options(source_opt, keyed=True), k=k, registry=list(registries))
        plugins = get_plugins()
        adapter_cls, adapter_config = resolve_adapter(config, plugins, load_registry(config.registry))
        src = build_sources(config, plugins, adapter_cls is not None)[0]
        vlm = adapter_cls.load(adapter_config) if adapter_cls is not None else None
        record, _ = explain_sample(sample, src, vlm, k=k)
    except (UnknownName, RunError, RegistryError, InvalidSample, OSError) as e:
        _fail(str(e))
    click.echo(format_explanation(sample, record, source))
    if out:
        from .figures import PlotsUnavailable, explain_figure

        try:
            explain_figure(Path(out), sample.load_image(), sample.summary(), record.model_dump(),
                           title=f"{source}: where is the {tgt_name} relative to the {ref_name}?")
        except PlotsUnavailable as e:
            _fail(str(e))
        click.echo(f"figure: {out}")


# -- creg analyze ---------------------------------------------------------------------------------

@click.group("analyze")
def analyze_group() -> None:
    """Analyses that run the model again: flip equivariance, the ablation grid, the prompt sweep."""


@analyze_group.command("flip")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--no-progress", is_flag=True)
def flip_cmd(run_dir: str, no_progress: bool) -> None:
    """Re-run RUN_DIR's configuration on horizontally flipped images (into RUN_DIR/flip) and print
    the Pearson r between each compass and the mirrored flipped one (§6.1)."""
    from . import analysis
    from .runner import RunError

    try:
        analysis.run_flipped(Path(run_dir), progress=not no_progress, log=_log)
    except RunError as e:
        _fail(str(e))
    result = analysis.flip_equivariance(analysis.load_records(Path(run_dir)), analysis.load_records(Path(run_dir) / "flip"))
    for name, f in result.items():
        r = "–" if f["r_mean"] is None else f"{f['r_mean']:+.3f}"
        click.echo(f"{name:<20} n={f['n']:<4} r(mean)={r}  peak agreement={f['peak_agreement']:.3f}")
    click.echo(f"`creg report {run_dir}` adds the flip section")


def _grid_options(fn):
    opts = [
        click.option("--adapter", required=True, help="preset or adapter plugin name"),
        click.option("--model", default=None),
        click.option("--bench", default="synthetic", show_default=True),
        click.option("--n", type=int, default=None),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--data-dir", type=click.Path(file_okay=False), default=None, envvar="CREG_DATA_DIR"),
        click.option("--batch-size", type=int, default=1, show_default=True),
        click.option("--dtype", default=None, type=click.Choice(["auto", "float32", "bfloat16", "float16"])),
        click.option("--device", default=None),
        click.option("--source-opt", multiple=True, help="creg.KEY=VALUE, applied to every configuration"),
        click.option("--bench-opt", multiple=True),
        click.option("--registry", "registries", multiple=True, type=click.Path(dir_okay=False)),
        click.option("--out", required=True, type=click.Path(file_okay=False), help="one run directory per configuration goes here"),
        click.option("--no-progress", is_flag=True),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def _base_config(kw: dict[str, Any], **extra):
    from .cli import _parse_options
    from .runner import RunConfig

    return RunConfig(adapter=kw["adapter"], model=kw["model"], dtype=kw["dtype"], device=kw["device"], sources=["creg"],
                     source_options=_parse_options(kw["source_opt"], keyed=True), bench=kw["bench"],
                     bench_options=_parse_options(kw["bench_opt"], keyed=False), n=kw["n"], seed=kw["seed"],
                     data_dir=kw["data_dir"], batch_size=kw["batch_size"], registry=list(kw["registries"]), **extra)


def _run_grid(configs, kw, name: str, title: str, labels, accuracy: bool) -> None:
    from . import analysis
    from .plugins import UnknownName
    from .registry import RegistryError
    from .report import variants_markdown
    from .runner import RunError
    from .summary import write_atomic, write_json_atomic

    out = Path(kw["out"])
    try:
        summaries = analysis.run_variants(configs, out, progress=not kw["no_progress"], log=_log)
    except (UnknownName, RunError, RegistryError, FileNotFoundError) as e:
        _fail(str(e))
    rows = analysis.variants_table(summaries, labels=labels, accuracy=accuracy)
    text = variants_markdown(title, rows, accuracy=accuracy)
    write_json_atomic(out / f"{name}.json", rows)
    write_atomic(out / f"{name}.md", text)
    click.echo(text)
    click.echo(f"wrote {out / (name + '.md')} and {name}.json; each configuration's run is in {out}/<name>")


@analyze_group.command("ablation")
@_grid_options
def ablation_cmd(**kw) -> None:
    """Table 5: CREG default, K = 4, single layer (-2), no contrastive target -- DAE and EA."""
    from . import analysis

    configs = analysis.ablation_configs(_base_config(kw))
    _run_grid(configs, kw, "ablation", f"Ablation ({kw['bench']}, {kw['adapter']})", analysis.ABLATION_LABELS, accuracy=False)


@analyze_group.command("prompts")
@_grid_options
@click.option("--prompts", default="A,B,C", show_default=True, help="comma-separated templates")
def prompts_cmd(prompts: str, **kw) -> None:
    """Table 6: VLM accuracy and CREG's DAE for each prompt template (App. A.1)."""
    from . import analysis
    from .prompts import PROMPTS

    names = [p.strip() for p in prompts.split(",") if p.strip()]
    labels = {p: f"{p}: {PROMPTS.get(p, p)[:60]}…" for p in names}
    configs = analysis.prompt_configs(_base_config(kw), names)
    _run_grid(configs, kw, "prompts", f"Prompt sweep ({kw['bench']}, {kw['adapter']})", labels, accuracy=True)
