"""The paper's protocol in one command (``creg reproduce``): which runs it takes, running them, and
one report that sets our numbers beside the published ones (:mod:`creg.report.published`).

The plan, per benchmark (VSR and COCO-Pairs in the paper; ``synthetic`` where no data is given):

* ``BENCH/table1`` -- Table 1 (every source of ``creg run``'s default list): Tables 1 and 3, per
  class (§6.2, Fig. 4), correct/incorrect, the paired tests of CREG against every other source;
* ``BENCH/cos_grey``, ``BENCH/cos_blur``, ``BENCH/cos_patch_drop`` -- Table 4's causal occlusion with
  each operator (grey is the paper's), for CREG, attention rollout and uniform-noise relevance (the
  control), on the same samples; every COS run also records the true-direction reading, the
  adjacent-sector control and the area-matched one (:mod:`creg.explain.occlusion`);

and on the first benchmark (VSR in the paper):

* ``ablation/NAME`` -- Table 5 (:func:`creg.experiments.variants.ablation_configs`);
* ``prompts/A|B|C`` -- Table 6, the prompt sweep of App. A.1;
* ``BENCH/cos_grey/flip`` -- §6.1 flip equivariance: the grey-fill COS run's samples and sources (CREG,
  attention rollout, noise) re-run on left-right flipped images (no COS), so CREG's r stands
  beside the strongest baseline's and the noise control's.

Sample counts (:data:`PAPER_SIZES`, :data:`QUICK_SIZES`): the paper's where a benchmark reads a
dataset; where every benchmark of the plan is generated (``synthetic``, standing in on the toy
model) the quick sizes, so that the whole protocol runs offline in minutes (Table 1 keeps
``creg run``'s 200 samples, so its table is the default run's; the COS runs take 60, where
occlusion costs about a dozen extra forward passes per sample). ``sizes`` chooses explicitly;
``limit`` caps every step's count.

Every sub-run is an ordinary run directory written through the run store, so the whole protocol is
resumable: running the same command again continues where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from creg.config.defaults import DEFAULT_REPRODUCE_BENCHES
from creg.config.resolve import resolve_run_config
from creg.config.run_config import COS_OPERATORS, RunConfig  # COS_OPERATORS: creg run --cos-op's; grey is the paper's
from creg.core.errors import RunError
from creg.execution.runner import Runner
from creg.experiments.heatmaps import recompute_maps
from creg.experiments.variants import (
    ablation_configs,
    prompt_configs,
    run_flipped,
    run_variants,
)
from creg.plugins.manager import get_plugins
from creg.report.report import build_report
from creg.report.reproduction import reproduction_report

#: The paper's benchmarks, in its order.
PAPER_BENCHMARKS = DEFAULT_REPRODUCE_BENCHES
#: Sample counts of the paper (§5.1, Table 5, Table 6, §6.1); other benchmarks use Table 1's VSR size.
TABLE1_N = {"vsr": 240, "coco_pairs": 300}
ABLATION_N = 60
PROMPTS_N = 30


@dataclass(frozen=True)
class Sizes:
    """Samples per step. ``table1`` / ``cos``: per benchmark (None: the paper's Table 1 size,
    :data:`TABLE1_N`); the flip re-run takes the COS count; ``ablation``: each of Table 5's runs;
    ``prompts``: each of Table 6's."""

    table1: int | None
    cos: int | None
    ablation: int
    prompts: int

    def table1_n(self, bench: str) -> int:
        return self.table1 if self.table1 is not None else TABLE1_N.get(bench, TABLE1_N["vsr"])

    def cos_n(self, bench: str) -> int:
        return self.cos if self.cos is not None else self.table1_n(bench)


#: The paper's sizes: Table 1 and COS on 240 (VSR) / 300 (COCO-Pairs) samples, 60 for Table 5, 30 for Table 6.
PAPER_SIZES = Sizes(table1=None, cos=None, ablation=ABLATION_N, prompts=PROMPTS_N)
#: Offline on generated scenes (the toy model): Table 1 on ``creg run``'s default 200 samples, COS on 60.
QUICK_SIZES = Sizes(table1=200, cos=60, ablation=ABLATION_N, prompts=PROMPTS_N)
SIZES = {"paper": PAPER_SIZES, "quick": QUICK_SIZES}
#: Sources of the extra-operator COS runs: the method, the strongest baseline, the noise control.
COS_SOURCES = ("creg", "attention_rollout", "random_relevance")
#: Benchmark that stands in when no dataset is available.
SUBSTITUTE = "synthetic"


@dataclass
class Step:
    """One run (``kind="run"``), grid of runs (``"variants"``) or flip re-run (``"flip"``)."""

    name: str  # path below the reproduction directory
    kind: str
    what: str  # the paper's table / section it serves
    configs: dict[str, RunConfig] = field(default_factory=dict)  # kind run: {"": config}; variants: {name: config}
    of: str | None = None  # kind flip: the step whose run is flipped


@dataclass
class Plan:
    out: Path
    benchmarks: list[str]
    steps: list[Step]
    notes: list[str]

    def describe(self) -> list[str]:
        """One line per step (what it runs, where, how many samples)."""
        lines = []
        for s in self.steps:
            if s.kind == "flip":
                lines.append(f"{s.name}: {s.what} (flipped images of {s.of})")
                continue
            cfgs = list(s.configs.values())
            n = cfgs[0].n
            srcs = sorted({x for c in cfgs for x in c.sources})
            lines.append(f"{s.name}: {s.what} -- {cfgs[0].bench}, n={n if n is not None else 'default'}, "
                         f"{len(cfgs)} run(s), sources {','.join(srcs)}" +
                         (f", COS {cfgs[0].cos_op}" if cfgs[0].cos else ""))
        return lines


def needs_data(bench: str, plugins) -> bool:
    """Whether a benchmark reads a dataset: its registration metadata ``needs_data``."""
    return bool(plugins.get("benchmark", bench).metadata.get("needs_data", False))


def plan_reproduction(out: Path, *, adapter: str | None, benchmarks: list[str] | None = None, data_dir: str | None = None,
                      limit: int | None = None, sizes: str | None = None, seed: int = 0,
                      sources: list[str] | None = None, plugins=None, **run_fields: Any) -> Plan:
    """The steps of the protocol for ``adapter`` (see the module docstring). Benchmarks that need
    data are skipped with a note when ``data_dir`` is None; when none is left, :data:`SUBSTITUTE`
    stands in (with a note). ``sizes``: ``"paper"`` or ``"quick"`` (:data:`SIZES`); None: quick when
    no benchmark of the plan reads a dataset, else the paper's. ``limit`` caps every step.
    ``run_fields``: further :class:`RunConfig` fields (model, dtype, device, batch_size, registry,
    ...), the same for every run. ``adapter``, ``sources`` and the fields resolve as every entry point's
    (:func:`creg.config.resolve.resolve_run_config`: None is the default, the adapter chosen from ``model``'s
    config.json when only a model is given; ``data_dir`` None falls back to ``$CREG_DATA_DIR``)."""

    plugins = plugins or get_plugins()
    if limit is not None and limit < 1:
        raise RunError(f"--limit {limit}: expected a number of samples >= 1")
    base = resolve_run_config({**run_fields, "adapter": adapter, "seed": seed, "data_dir": data_dir,
                               "sources": list(sources) if sources else None}, plugins)
    data_dir, sources = base.data_dir, list(base.sources)
    asked = list(benchmarks or PAPER_BENCHMARKS)
    notes: list[str] = []
    benches = []
    for b in asked:
        if data_dir is None and needs_data(b, plugins):
            notes.append(f"{b}: skipped (it needs its dataset: pass --data-dir or set CREG_DATA_DIR)")
        else:
            benches.append(b)
    if not benches:
        benches = [SUBSTITUTE]
        notes.append(f"{SUBSTITUTE} stands in for {', '.join(asked)}: the paper's numbers are shown for "
                     "orientation only, they were measured on other data")
    if sizes is None:
        sizes = "paper" if any(needs_data(b, plugins) for b in benches) else "quick"
    if sizes not in SIZES:
        raise RunError(f"--sizes {sizes}: expected one of {', '.join(SIZES)}")
    size = SIZES[sizes]
    if sizes == "quick" and limit is None:
        notes.append(f"quick sizes: Table 1 on {size.table1_n(benches[0])} samples, COS on "
                     f"{size.cos_n(benches[0])}, Table 5 on {size.ablation}, Table 6 on {size.prompts} "
                     "(--sizes paper for the paper's, --limit to cap)")

    def n_for(n: int) -> int:
        return n if limit is None else min(n, limit)

    def config(bench: str, n: int, **fields) -> RunConfig:
        return RunConfig.checked(**{**base.model_dump(), "bench": bench, "n": n, **fields})

    steps: list[Step] = []
    for b in benches:
        steps.append(Step(f"{b}/table1", "run", "Table 1, 3, per class, correct/incorrect, paired tests",
                          {"": config(b, n_for(size.table1_n(b)))}))
        cos_sources = [s for s in COS_SOURCES if s in sources] or sources
        for op in COS_OPERATORS:
            steps.append(Step(f"{b}/cos_{op}", "run", f"Table 4: COS with operator {op}" + (" (the paper's)" if op == "grey" else ""),
                              {"": config(b, n_for(size.cos_n(b)), cos=True, cos_op=op, sources=cos_sources)}))
    first = benches[0]
    steps.append(Step("ablation", "variants", "Table 5 (ablation)",
                      ablation_configs(config(first, n_for(size.ablation)))))
    steps.append(Step("prompts", "variants", "Table 6 (prompt sweep, App. A.1)",
                      prompt_configs(config(first, n_for(size.prompts)))))
    steps.append(Step(f"{first}/cos_grey/flip", "flip", "§6.1 flip equivariance", of=f"{first}/cos_grey"))
    return Plan(Path(out), benches, steps, notes)


@dataclass
class Reproduction:
    plan: Plan
    runs: dict[str, Path]  # step/variant name -> run directory
    elapsed_s: float
    report: dict[str, Any]
    text: str


def run_plan(plan: Plan, *, progress: bool = True, figures: bool = False,
             log: Callable[[str], None] | None = None) -> Reproduction:
    """Run every step (resumable), then write ``report.md`` / ``report.json`` at the top of the
    reproduction directory. One model load serves every run that names the same model."""

    if log is None:
        from creg.core.logs import info as log  # lazy: guarded
    t0 = time.perf_counter()
    runs: dict[str, Path] = {}
    adapter = first_config = None
    for step in plan.steps:
        log(f"[reproduce] {step.name}: {step.what}")
        if step.kind == "run":
            out = plan.out / step.name
            runner = Runner(step.configs[""], out, adapter=adapter, progress=progress, log=log)
            runner.run()
            if adapter is None:
                adapter, first_config = runner.adapter, step.configs[""]
            runs[step.name] = out
            if figures:

                build_report(out, figures=True, html=False, log=log, recompute=recompute_maps)
        elif step.kind == "variants":
            same = all(c.prompt == first_config.prompt for c in step.configs.values()) if first_config else False
            run_variants(step.configs, plan.out / step.name, progress=progress, log=log, adapter=adapter if same else None)
            for name in step.configs:
                runs[f"{step.name}/{name}"] = plan.out / step.name / name
        elif step.kind == "flip":
            run_flipped(plan.out / step.of, progress=progress, log=log, adapter=adapter)
            runs[step.name] = plan.out / step.name

    elapsed = time.perf_counter() - t0
    report, text = reproduction_report(plan, runs, elapsed_s=elapsed)
    return Reproduction(plan, runs, elapsed, report, text)
