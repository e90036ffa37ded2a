"""Runs of a run's configuration under a change, each into a sub-directory and resumable like any run:
the horizontally flipped samples (§6.1), the ablation grid (Table 5) and the prompt sweep (Table 6, App. A.1).
Their records are analysed by :mod:`creg.summary.breakdowns`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import ImageOps

from creg.core.logs import info as log_info
from creg.core.sample import Box, Sample, make_sample
from creg.execution.auto_layers import resolved_source_options
from creg.execution.runner import RunConfig, Runner
from creg.plugins.benchmark import DerivedBenchmark
from creg.store import RunStore
from creg.summary.breakdowns import FLIPPED_RELATION


def flip_sample(sample: Sample) -> Sample:
    """The sample mirrored left-right: image, both boxes (x -> W - x) and the relation."""

    w, _ = sample.image_size

    def mirror(b: Box) -> Box:
        return Box(x0=w - b.x1, y0=b.y0, x1=w - b.x0, y1=b.y1)

    return make_sample(
        id=sample.id, image=ImageOps.mirror(sample.load_image()), image_size=sample.image_size,
        ref_name=sample.ref_name, ref_box=mirror(sample.ref_box), tgt_name=sample.tgt_name,
        tgt_box=mirror(sample.tgt_box), relation=FLIPPED_RELATION[sample.relation],
        meta={**sample.meta, "flipped": True},
    )


class FlippedBenchmark(DerivedBenchmark):
    """Another benchmark's samples, each mirrored left-right (same ids, for pairing)."""

    name = "flipped"
    marker = "flipped"
    description = "horizontally flipped samples of another benchmark (flip equivariance, §6.1)"

    def derive(self, sample: Sample) -> Sample:
        return flip_sample(sample)


def run_flipped(run_dir: Path, *, progress: bool = True, log: Callable[[str], None] = log_info, adapter=None):
    """Re-run a run's configuration on flipped images into ``RUN_DIR/flip`` (resumable; no COS).
    ``adapter``: an already loaded model of the same configuration (none: loaded here)."""


    store = RunStore.read(run_dir)

    config = RunConfig(**store.config["run"]).model_copy(
        update={"cos": False, "controls": [], "source_options": resolved_source_options(store.config)})
    runner = Runner(config, store.sub_path("flip"), adapter=adapter, progress=progress, log=log)
    runner.benchmark = FlippedBenchmark(runner.benchmark)
    return runner.run()


# -- pairwise significance -----------------------------------------------------------------------


def ablation_configs(base) -> dict[str, Any]:
    """Table 5's rows from a base :class:`~creg.execution.runner.RunConfig` (its creg options are the default):
    ``default``, ``k4`` (K = 4), ``single_layer`` (layers [-2]), ``no_contrastive``."""
    creg_opts = dict(base.source_options.get("creg", {}))

    def variant(**update):
        return base.model_copy(update={"sources": ["creg"], "cos": False, **update})

    return {
        "default": variant(source_options={"creg": creg_opts}),
        "k4": variant(source_options={"creg": creg_opts}, k=4),
        "single_layer": variant(source_options={"creg": {**creg_opts, "layers": [-2]}}),
        "no_contrastive": variant(source_options={"creg": {**creg_opts, "contrastive": False}}),
    }


def prompt_configs(base, prompts: Sequence[str] = ("A", "B", "C")) -> dict[str, Any]:
    """Table 6's rows: the base configuration (source ``creg``) with each prompt template."""
    return {p: base.model_copy(update={"sources": ["creg"], "cos": False, "prompt": p}) for p in prompts}


def run_variants(configs: dict[str, Any], out_root: Path, *, progress: bool = True,
                 log: Callable[[str], None] = log_info, adapter=None) -> dict[str, dict[str, Any]]:
    """Run each configuration into ``out_root/NAME`` (resumable) and return their summaries.
    One model load is shared when every configuration names the same model; ``adapter``: a model
    already loaded for that configuration (used only when every configuration names the same one)."""

    summaries: dict[str, dict[str, Any]] = {}
    first = next(iter(configs.values()), None)
    if first is not None and any((c.adapter, c.model, c.dtype, c.device, c.prompt) != (first.adapter, first.model, first.dtype, first.device, first.prompt)
                                 for c in configs.values()):
        adapter = None
    for name, config in configs.items():
        runner = Runner(config, Path(out_root) / name, adapter=adapter, progress=progress, log=log)
        summaries[name] = runner.run().summary
        same_model = all((c.adapter, c.model, c.dtype, c.device, c.prompt) == (config.adapter, config.model, config.dtype, config.device, config.prompt)
                         for c in configs.values())
        adapter = runner.adapter if same_model else None
    return summaries
