"""``creg run``: a benchmark through a model and relevance sources."""

from __future__ import annotations

from pathlib import Path
import hashlib
import json

import click

from .common import config_file_option, fail, log, parse_options

from ..plugins import PluginLoadError, UnknownName, get_plugins
from ..registry import RegistryError, load_registry

DEFAULT_ADAPTER = "qwen2vl-toy"
#: Table 1's methods, the single-layer Grad x Act baseline and the §6.3 controls.
DEFAULT_SOURCES = (
    "oracle,creg,creg_gt,attention_rollout,gradnorm,integrated_gradients,gradcam,gradxact,"
    "target_box,random_relevance,random"
)
DATA_DIR_ENV = "CREG_DATA_DIR"



class _BatchSizeText(click.ParamType):
    """``N`` or ``auto``, passed through: run_cmd checks it (creg.batching.parse_batch_size, a one-line error)."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        return value


_BATCH_SIZE = _BatchSizeText()


def _default_out(config) -> Path:
    ident = json.dumps(config.identity(), sort_keys=True, default=str)
    h = hashlib.sha1(ident.encode()).hexdigest()[:8]
    return Path("runs") / f"{config.bench}-{config.adapter}-{h}"


@click.command("run")
@config_file_option
@click.option("--adapter", default=None, help=f"preset (see `creg list`) or adapter plugin name; default {DEFAULT_ADAPTER}")
@click.option("--model", default=None, help="hub id or local directory (overrides the preset's model)")
@click.option("--source", "sources", default=DEFAULT_SOURCES, show_default=True, help="comma-separated source names")
@click.option("--bench", default="synthetic", show_default=True, help="benchmark name")
@click.option("--n", type=int, default=None, help="number of samples (benchmark default if omitted)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="run directory (default: runs/BENCH-ADAPTER-HASH)")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, envvar=DATA_DIR_ENV, help=f"dataset root (or ${DATA_DIR_ENV})")
@click.option("--batch-size", type=_BATCH_SIZE, default=1, show_default=True,
              help="samples per forward pass, grouped by similar length; auto: the largest that fits the GPU "
                   "(8 on the CPU) -- docs/speed.md")
@click.option("--k", "k", type=int, default=8, show_default=True, help="compass sectors")
@click.option("--sigma-r", type=float, default=0.6, show_default=True)
@click.option("--rho-r", type=float, default=2.0, show_default=True)
@click.option("--prompt", default=None, help="prompt template: A, B, C or a literal with {ref} and {tgt}")
@click.option("--dtype", default=None, type=click.Choice(["auto", "float32", "bfloat16", "float16"]))
@click.option("--device", default=None, help="cpu, cuda, cuda:1, ... (default: the preset's, auto)")
@click.option("--source-opt", multiple=True, help="SOURCE.KEY=VALUE, e.g. creg.layers=[-2]")
@click.option("--bench-opt", multiple=True, help="KEY=VALUE, e.g. split=zeroshot")
@click.option("--registry", "registries", multiple=True, type=click.Path(dir_okay=False), help="extra registry file(s)")
@click.option("--cos", is_flag=True, help="causal occlusion score (Eq. 8) per sample and source; needs a model")
@click.option("--cos-op", type=click.Choice(["grey", "blur", "patch_drop"]), default="grey", show_default=True,
              help="how --cos occludes a sector (docs/evaluation.md)")
@click.option("--overwrite", is_flag=True, help="discard an existing run in --out instead of continuing it")
@click.option("--max-failures", default=None, metavar="COUNT|FRACTION",
              help="stop when more samples fail than this: a count (20) or a fraction of the samples tried "
                   "(0.1, 10%); default 0.5, judged after 10 samples")
@click.option("--no-progress", is_flag=True, help="no progress bar")
def run_cmd(adapter, model, sources, bench, n, seed, out, data_dir, batch_size, k, sigma_r, rho_r, prompt,
            dtype, device, source_opt, bench_opt, registries, cos, cos_op, overwrite, max_failures, no_progress) -> None:
    """Explain a benchmark with one or more relevance sources; print the Table-1-style result."""
    from ..logs import quiet
    from ..runner import Runner, RunConfig, RunError

    plugins = get_plugins()
    if adapter is None:
        try:
            adapter = DEFAULT_ADAPTER if DEFAULT_ADAPTER in load_registry(registries) else "none"
        except RegistryError as e:
            fail(str(e))
    from ..batching import parse_batch_size
    from ..distributed import run as run_here_or_distributed, world_from_env

    try:
        batch_size = parse_batch_size(batch_size)
        world = world_from_env()  # set by torchrun: this process is one rank of a data-parallel run
    except ValueError as e:
        fail(str(e))
    try:
        config = RunConfig(
            adapter=adapter, model=model, dtype=dtype, device=device, prompt=prompt,
            sources=[s.strip() for s in sources.split(",") if s.strip()],
            source_options=parse_options(source_opt, keyed=True),
            bench=bench, bench_options=parse_options(bench_opt, keyed=False),
            n=n, seed=seed, data_dir=data_dir, k=k, sigma_r=sigma_r, rho_r=rho_r,
            batch_size=batch_size, cos=cos, cos_op=cos_op, registry=list(registries),
        )
        out_dir = Path(out) if out else _default_out(config)
        runner = Runner(config, out_dir, plugins=plugins, overwrite=overwrite, progress=not no_progress and not quiet(),
                        log=log, max_failures=max_failures)
        result = run_here_or_distributed(runner, world=world)  # one process, or one rank of a torchrun launch
    except UnknownName as e:
        fail(str(e))
    except (RunError, RegistryError, PluginLoadError) as e:
        fail(str(e))
    except OSError as e:  # a benchmark's data is missing, a full disk: the message says what and where
        fail(str(e))
    except KeyboardInterrupt as e:
        from ..runner import Terminated

        what, code = ("terminated (SIGTERM)", 143) if isinstance(e, Terminated) else ("interrupted", 130)
        fail(f"{what}; the partial run is in {out_dir}: re-run the same command to continue", code)
    if result is None:  # a rank other than 0 of a data-parallel run: rank 0 prints the merged result
        return
    click.echo(result.table)
    click.echo(f"run directory: {result.out}  (records.jsonl, summary.json, table.md)")


