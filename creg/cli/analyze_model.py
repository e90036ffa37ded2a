"""``creg analyze randomize`` and ``creg analyze layers``: analyses that change the model (creg.explain.layers, creg.experiments.randomize)."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Any

import click

from creg.cli.common import (
    bench_options,
    execution_options,
    fail,
    log,
    model_options,
    run_config_from,
    source_options,
)
from creg.config.defaults import DEFAULT_MODEL
from creg.config.presets import RegistryError
from creg.core.errors import RunError
from creg.execution.threads import apply_threads
from creg.plugins.manager import PluginLoadError, UnknownName
from creg.plugins.options import OptionsError

#: samples used when --limit is not given (both analyses run the model many times per sample).
DEFAULT_N = 16


def _model_analysis_options(fn):
    fn = click.option("--out", type=click.Path(file_okay=False), default=None,
                      help="also write NAME.json and NAME.md into this directory")(fn)
    for shared in (execution_options(batch_size=False), source_options, bench_options,
                   model_options(adapter_default=DEFAULT_MODEL, adapter_help="preset or adapter plugin name")):
        fn = shared(fn)
    return fn


def _prepare(kw: dict[str, Any], sources: list[str]):
    """(runner with the model loaded, the first --limit samples, default 16), or a one-line exit."""
    from creg.execution.runner import Runner  # lazy: torch

    n = kw.get("n") if kw.get("n") is not None else DEFAULT_N
    config = run_config_from({**kw, "n": n}, sources=sources)
    try:
        apply_threads(config.threads)
        runner = Runner(config, Path(kw.get("out") or "."), progress=False, log=log)
        if runner.adapter is None:
            raise RunError("this analysis runs a model: choose one with --adapter")
        samples = list(islice(runner.benchmark.samples(), n))
    except (UnknownName, RunError, RegistryError, OptionsError, PluginLoadError, OSError) as e:
        fail(str(e))
    if not samples:
        fail("the benchmark gave no samples")
    return runner, samples


def _write(out: str | None, name: str, result: dict[str, Any], text: str) -> None:
    if out:
        root = Path(out)
        root.mkdir(parents=True, exist_ok=True)
        (root / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (root / f"{name}.md").write_text(text)
        click.echo(f"wrote {root / (name + '.md')} and {name}.json")


@click.command("randomize")
@_model_analysis_options
@click.option("--source", "sources", default="creg,gradnorm,attention_rollout,random_relevance", show_default=True,
              help="comma-separated sources")
def randomize_cmd(sources: str, **kw) -> None:
    """Model-randomisation sanity check (Adebayo et al. 2018): re-initialise decoder blocks from the top,
    then the vision tower; print each source's mean Spearman rho with the original maps per step and
    which sources fail (maps that barely change). --limit samples (default 16)."""
    from creg.experiments.randomize import randomize, randomize_markdown  # lazy: torch

    runner, samples = _prepare(kw, [s.strip() for s in sources.split(",") if s.strip()])
    try:
        result = randomize(runner.adapter, runner.sources, samples, seed=runner.config.seed, log=log)
    except RunError as e:
        fail(str(e))
    text = randomize_markdown(result, f"Model randomisation ({runner.config.bench}, {runner.config.adapter}, "
                                      f"n={len(samples)})")
    click.echo(text)
    _write(kw.get("out"), "randomize", result, text)


@click.command("layers")
@_model_analysis_options
def layers_cmd(**kw) -> None:
    """Per decoder block, the answer's change when that block's text->vision attention is knocked out and when
    the vision tokens at its input are patched with a blank image's; recommend CREG's layers (docs/user-guide.md).
    --limit samples (default 16)."""
    from creg.explain.layers import layer_effects, layers_markdown  # lazy: torch

    runner, samples = _prepare(kw, ["creg"])
    try:
        result = layer_effects(runner.adapter, samples, runner.benchmark.blank_sample, log=log)
    except RunError as e:
        fail(str(e))
    text = layers_markdown(result, f"Layer analysis ({runner.config.bench}, {runner.config.adapter}, n={len(samples)})")
    click.echo(text)
    _write(kw.get("out"), "layers", result, text)
