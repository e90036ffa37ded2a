"""``python -m tools.creg_toy train | eval | probe``: rebuild and check the toy Qwen2-VL (a development tool)."""

from __future__ import annotations

import json

import click


@click.group("toy")
def toy_group() -> None:
    """The toy Qwen2-VL trained on synthetic scenes (preset qwen2vl-toy; docs/toy-model.md)."""


def _scene_options(layout: str, distractors: int) -> dict:
    return {"layout": layout, **({"distractors": distractors} if distractors else {})}


@toy_group.command("train")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="run directory: resumed if it holds a run with the same settings, else replaced")
@click.option("--grow-from", type=click.Path(exists=True, file_okay=False), default=None,
              help="start from this checkpoint grown to --text-layers/--vision-depth/--image-side")
@click.option("--init-from", type=click.Path(exists=True, file_okay=False), default=None,
              help="start from this checkpoint as it is")
@click.option("--text-layers", type=int, default=8, show_default=True)
@click.option("--vision-depth", type=int, default=4, show_default=True)
@click.option("--image-side", type=int, default=336, show_default=True,
              help="the image processor resizes images to this side (336: a 12x12 token grid, 448: 16x16)")
@click.option("--read-window", default=None, metavar="FIRST,LAST",
              help="decoder blocks in which the text may read vision tokens (penalised elsewhere)")
@click.option("--read-weight", type=float, default=0.0, show_default=True,
              help="weight of the attention mass read outside --read-window")
@click.option("--read-reduce", type=click.Choice(["mean", "max"]), default="mean", show_default=True,
              help="over the text queries: the mean read, or the query that reads most")
@click.option("--knockout-weight", type=float, default=0.0, show_default=True,
              help="weight of the 'every block matters' loss (one knocked-out block per step)")
@click.option("--reinit-blocks", default="", metavar="I,J,...",
              help="with --init-from: decoder blocks whose output projections start afresh")
@click.option("--reinit-scale", type=float, default=1.0, show_default=True,
              help="std of those projections, in units of 1/sqrt(fan-in)")
@click.option("--knockout-margin", type=float, default=0.3, show_default=True,
              help="nats of cross-entropy a knocked-out block should cost")
@click.option("--seed", type=int, default=0, show_default=True, help="growth init and training-scene seed")
@click.option("--steps", type=int, default=1500, show_default=True, help="optimiser steps (raise it to extend a run)")
@click.option("--batch-size", type=int, default=24, show_default=True, help="samples per step, flipped copies included")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--warmup", type=int, default=50, show_default=True)
@click.option("--flips", default="h,v,hv", show_default=True, help="flipped copies of every scene ('' for none)")
@click.option("--layout", default="disc", show_default=True, help="synthetic scene layout")
@click.option("--distractors", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads")
@click.option("--until", type=int, default=None, help="stop (saved, resumable) after this step")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="write the curve here (PNG)")
def train_cmd(out_dir, grow_from, init_from, text_layers, vision_depth, image_side, read_window, read_weight, read_reduce,
              knockout_weight, reinit_blocks, reinit_scale, knockout_margin, seed, steps, batch_size, lr, warmup, flips, layout, distractors,
              threads, until, plot) -> None:
    """Train the toy model into OUT, resumably (prints the curve as JSON lines)."""
    from .training import ToyConfig, train

    if bool(grow_from) == bool(init_from):
        raise click.UsageError("give exactly one of --grow-from and --init-from")
    window = None
    if read_window:
        try:
            first, last = (int(v) for v in read_window.split(","))
        except ValueError:
            raise click.BadParameter("give two block indices, e.g. 3,6", param_hint="--read-window") from None
        window = (first, last)
    cfg = ToyConfig(image_side=image_side if init_from else None, read_window=window, read_weight=read_weight, read_reduce=read_reduce,
                    knockout_weight=knockout_weight, knockout_margin=knockout_margin,
                    reinit_blocks=tuple(int(b) for b in reinit_blocks.split(",") if b.strip()), reinit_scale=reinit_scale,
                    seed=seed, steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, threads=threads,
                    flips=tuple(f for f in flips.split(",") if f), scene_options=_scene_options(layout, distractors),
                    grow_from=grow_from, init_from=init_from,
                    grow={"text_layers": text_layers, "vision_depth": vision_depth, "image_side": image_side})
    try:
        result = train(cfg, out_dir, log=lambda line: click.echo(line), stop_at=until)
    except (ValueError, FileExistsError) as e:
        raise click.ClickException(str(e)) from None
    if plot:
        from .figures import plot_history

        plot_history(result["history"], plot)
    click.echo(f"saved {out_dir} ({result['params']} parameters, {result['seconds']:.0f} s)")


@toy_group.command("eval")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--n", type=int, default=200, show_default=True, help="number of scenes (balanced when a multiple of 4)")
@click.option("--seed", type=int, default=0, show_default=True, help="scene seed (training uses seeds >= 1e9)")
@click.option("--layout", default="disc", show_default=True, help="synthetic scene layout")
@click.option("--distractors", type=int, default=0, show_default=True)
def eval_cmd(model_dir, n, seed, layout, distractors) -> None:
    """Accuracy and flip equivariance of MODEL_DIR on synthetic scenes, through the adapter."""
    from .training import evaluate_dir

    res = evaluate_dir(model_dir, n=n, seed=seed, **_scene_options(layout, distractors))
    click.echo(f"accuracy {res['accuracy']:.3f} on {n} scenes of seed {seed}; flip equivariance "
               f"left-right {res['flip_h']:.3f}, top-bottom {res['flip_v']:.3f}")
    for rel, acc in res["per_class"].items():
        click.echo(f"  {rel:<6} {acc:.3f}")
    click.echo(json.dumps(res))


@toy_group.command("probe")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--n", type=int, default=48, show_default=True, help="number of scenes")
@click.option("--seed", type=int, default=0, show_default=True, help="scene seed")
def probe_cmd(model_dir, n, seed) -> None:
    """Per decoder block of MODEL_DIR: what knocking it out, closing its text->vision attention, or
    patching its vision input with a blank scene's costs in log p(gt), and how much the text reads
    the image there."""
    import torch

    from creg.explain.layers import layer_effects

    from .data import Batcher, blank_sample, load_adapter, scenes
    from .shaping import block_effects

    torch.set_num_threads(1)
    adapter = load_adapter(model_dir)
    base = list(scenes(seed, n))
    rows = block_effects(adapter, Batcher(adapter), base)
    for row, effect in zip(rows, layer_effects(adapter, base, blank_sample)["blocks"]):
        row.update(read_drop=effect["knockout_logp_drop"], patch_drop=effect["patch_logp_drop"])
    click.echo(f"{'block':>5} {'knockout':>9} {'text->vision':>12} {'blank patch':>11} {'read_mass':>9}   "
               f"(mean drop of log p(gt); mean text->vision attention)")
    for r in rows:
        click.echo(f"{r['block']:>5} {r['knockout_drop']:>9.3f} {r['read_drop']:>12.3f} {r['patch_drop']:>11.3f} "
                   f"{r['read_mass']:>9.3f}")
    click.echo(json.dumps(rows))
