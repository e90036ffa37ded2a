"""``creg toy train`` and ``creg toy eval``: rebuild and check the toy Qwen2-VL.

Registered through creg's ``register_commands`` hook (``creg_qwen2vl`` imports this module).
"""

from __future__ import annotations

import json

import click

from creg.hookspecs import hookimpl


@click.group("toy")
def toy_group() -> None:
    """The toy Qwen2-VL trained on synthetic scenes (preset qwen2vl-toy)."""


@toy_group.command("train")
@click.option("--seed", type=int, default=0, show_default=True, help="init seed; training scenes use seed 1000+SEED")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="checkpoint directory (replaced)")
@click.option("--steps", type=int, default=None, help="optimiser steps [default: ToyConfig.steps]")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--curriculum-steps", type=int, default=None, help="steps of the fixed red/green pair stage")
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@click.option("--warmup", type=int, default=None, help="linear warm-up steps")
@click.option("--focus", default=None, help="over-sample scenes of these colours, e.g. red,yellow")
@click.option("--focus-fraction", type=float, default=None, help="share of each batch drawn with --focus colours")
@click.option("--init-from", type=click.Path(exists=True, file_okay=False), default=None,
              help="continue from this checkpoint's weights (a second training phase)")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="write the loss/accuracy curve here (PNG)")
def train_cmd(seed, out_dir, steps, batch_size, lr, curriculum_steps, threads, warmup, focus, focus_fraction, init_from, plot) -> None:
    """Train the toy model from scratch into OUT (prints the curve as JSON lines)."""
    from .training import ToyConfig, plot_history, train

    given = dict(seed=seed, steps=steps, batch_size=batch_size, lr=lr, curriculum_steps=curriculum_steps, threads=threads,
                 warmup=warmup, init_from=init_from, focus_colours=tuple(focus.split(",")) if focus else None,
                 focus_fraction=focus_fraction)
    cfg = ToyConfig(**{k: v for k, v in given.items() if v is not None})
    result = train(cfg, out_dir, log=lambda line: click.echo(line))
    if plot:
        plot_history(result["history"], plot)
    click.echo(f"saved {out_dir} ({result['params']} parameters, {result['seconds']:.0f} s)")


@toy_group.command("eval")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--n", type=int, default=200, show_default=True, help="number of scenes (balanced when a multiple of 4)")
@click.option("--seed", type=int, default=0, show_default=True, help="scene seed (training uses seeds >= 1000)")
def eval_cmd(model_dir, n, seed) -> None:
    """Accuracy of MODEL_DIR on synthetic scenes, through the Qwen2-VL adapter."""
    from .training import evaluate_dir

    res = evaluate_dir(model_dir, n=n, seed=seed)
    click.echo(f"accuracy {res['accuracy']:.3f} on {n} scenes of seed {seed}")
    for rel, acc in res["per_class"].items():
        click.echo(f"  {rel:<6} {acc:.3f}")
    click.echo(json.dumps(res))


@hookimpl
def register_commands(cli) -> None:
    cli.add_command(toy_group)
