#!/usr/bin/env python
"""Throughput of creg: samples/s by batch size and by number of ranks, cost per source in
forward-pass units (FPU), peak memory per phase, --cos overhead, integrated gradients vs Captum.

Every figure is a ratio measured inside one process (the ranks section starts its worker
processes from it), so the load of a shared machine cancels as far as it can:

* time is **process CPU time** (``time.process_time``) with one intra-op thread, except for
  the ranks section, which needs wall-clock time (it prints each rank's CPU/wall share too: a
  rank that got less than a whole core shows it);
* 1 FPU = one plain no-grad ``model(**inputs)`` of the same sample on inputs preprocessed once
  (no image loading, processor or tokenizer in the unit); a ratio takes the fastest of three runs
  of each side, timed in turn (:func:`best_ratio`); ``adapter.forward`` (preprocessing
  included) is printed in that unit beside the sources;
* memory is the **peak process RSS above the phase's starting RSS** on CPU: the kernel's
  high-water mark (VmHWM) is reset per phase through ``/proc/self/clear_refs`` and glibc's mmap
  threshold is lowered to 64 KiB so that freed tensors leave RSS (torch has no CPU allocator
  statistics; tracemalloc cannot see its memory). On CUDA, ``torch.cuda.max_memory_allocated``.
  The threshold is lowered only when the ``memory`` section runs: it turns every large tensor
  into a fresh mmap whose page faults count as CPU time, which inflated the FPU of passes that
  keep a graph by about a quarter. Time ``memory`` in a process of its own.

Sections (``--sections``, default all):

* ``batch``  toy model (the ``qwen2vl-toy`` preset): samples/s of the Table-1 sources through the
  run pipeline (:func:`creg.explain.pipeline.explain_batch`) at batch sizes 1, 4 and 16; --cos overhead.
* ``ranks``  toy model: 1 process vs 2 processes, each with its strided share of the same samples
  (what ``torchrun --nproc-per-node 2 -m creg run`` does after start-up); then the whole
  ``creg run`` command against the whole ``torchrun`` command (start-up and model loads
  included) beside each one's ``elapsed_s`` (the explain loop); ``commands`` runs that part alone.
* ``fpu``    a random Qwen2-VL of the same depth as Qwen2-VL-2B/7B (28 decoder layers, smaller
  width, ``--hidden``) at 64/256/1024 vision tokens: FPU per source and for the Table-1 set, and
  --cos overhead; the toy model's FPU too.
* ``memory`` the same model: the Table-1 set's peak memory per phase, and COS's with the graph
  of the sources still alive (as before this change) and freed first (now).
* ``phases`` the same model: where the Table-1 set's time goes, phase by phase in FPU (the
  shared forward, each source's explain), and GradCAM's floor (its forward with the graph from
  the vision output, its backward, the vision tower's share of a plain forward), and the set's
  cost on the first scene of each relation (how the model answers it decides how many backwards
  creg_gt needs of its own).
* ``coslevers`` the same model: COS's occluded passes with and without each lever (p_0 from the
  explained pass, the answer-row-only last block, the cached text prefix), in FPU.
* ``levers`` the same model: the Table-1 set with the text before the image in the graph and
  once per run (``text_prefix_once``), and an occluded row's cost by the number of rows per call
  (``occluded_tokens_per_call``), in FPU.
* ``captum`` the same model: ``integrated_gradients`` vs Captum's ``LayerIntegratedGradients`` run
  two ways, with equal results checked: (a) on a forward that starts at layer -2 (the last
  block, final norm and lm_head: Captum's fairest set-up, top layers only) and (b) on the full
  model (a multiplier on the layer's input gives the zero baseline at the layer).
* ``profile`` torch.profiler on the toy model's Table-1 batch: where CPU time goes, and the host
  synchronisations (``aten::item`` / ``_local_scalar_dense`` / device-to-host copies) per sample.

Example (docs/speed.md)::

    nice -n 19 python scripts/bench_throughput.py --sections batch,ranks,profile
    nice -n 19 python scripts/bench_throughput.py --sections fpu,memory,captum --hidden 256
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

TABLE1 = ["creg", "creg_gt", "attention_rollout", "gradnorm", "integrated_gradients", "gradcam", "random", "oracle"]
PER_SOURCE = ["creg", "creg_gt", "gradxact", "gradnorm", "gradcam", "integrated_gradients", "attention_rollout"]
TOKEN_SIDES = {64: 224, 256: 448, 1024: 896}  # vision tokens -> square image side (28 px per token)


# -- measurement helpers --------------------------------------------------------------------
def lower_mmap_threshold() -> None:
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD
    except OSError:
        pass


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


class PhasePeak:
    """Peak memory (MiB) of a phase above its start: RSS high-water (CPU) or CUDA allocator."""

    def __init__(self, device: torch.device):
        self.device, self.mib = device, 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.base = _status("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        else:
            self.mib = (_status("VmHWM") - self.base) / 2**20


_CUDA = False  # set by --device cuda: time is then wall-clock between device synchronisations


def _clock() -> float:
    """Process CPU time (on CUDA: wall-clock time after a device synchronisation)."""
    if _CUDA:
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def cpu_time(fn) -> float:
    """Process CPU time of ``fn()`` (on CUDA: wall-clock time, synchronised)."""
    if _CUDA:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - t0
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def print_table(first: str, tokens: list[int], rows) -> None:
    """A Markdown table with a column per token count: ``rows`` gives ``(name, cells)``, one cell
    string per token count."""
    print(f"| {first} | " + " | ".join(f"{t} tokens" for t in tokens) + " |")
    print("|---|" + "---:|" * len(tokens))
    for name, cells in rows:
        print(f"| {name} | " + " | ".join(cells) + " |")


def print_medians(title: str, first: str, rows: dict[int, dict[str, list[float]]], tokens: list[int], fmt) -> None:
    """:func:`print_table` under ``title``: a row per name of ``rows[tokens[0]]``, each cell the
    median of ``rows[token][name]`` formatted with ``fmt(name)``."""
    print(f"\n### {title}\n")
    print_table(first, tokens, ((name, [f"{med(rows[t][name]):{fmt(name)}}" for t in tokens]) for name in rows[tokens[0]]))


# -- models ---------------------------------------------------------------------------------
def load_toy(device: str = "cpu", dtype: str = "float32"):
    from creg.plugins.manager import get_plugins
    from creg.config.presets import load_registry
    from creg.config.run_config import RunConfig
    from creg.config.resolve import resolve_adapter

    cls, cfg = resolve_adapter(RunConfig(adapter="qwen2vl-toy", device=device, dtype=dtype), get_plugins(), load_registry([]))
    return cls.load(cfg)


def build_7b(out_dir: str, device: str = "cuda") -> str:
    """A random-init model of Qwen2-VL-7B-Instruct's shape (8.3 B parameters, bfloat16) in ``out_dir``."""
    from creg_qwen2vl.tiny import QWEN2VL_7B_SHAPE, build_tiny_qwen2vl

    t0 = time.time()
    build_tiny_qwen2vl(Path(out_dir), seed=0, init_device=device, dtype="bfloat16", **QWEN2VL_7B_SHAPE)
    print(f"built a random Qwen2-VL-7B-shaped model in {out_dir} ({time.time() - t0:.0f} s)", flush=True)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out_dir


def load_deep(hidden: int, layers: int, model_dir: str | None, device: str = "cpu", dtype: str = "float32", *,
              heads: int | None = None, kv_heads: int = 2, intermediate: int | None = None):
    from creg.plugins.adapter import AdapterConfig
    from creg_qwen2vl.adapter import Qwen2VLAdapter

    if model_dir is None:
        from creg_qwen2vl.tiny import build_tiny_qwen2vl

        heads = heads or max(2, hidden // 64)
        model_dir = str(build_tiny_qwen2vl(
            Path(tempfile.mkdtemp(prefix="bench_qwen2vl_")), seed=0, text_hidden_size=hidden, text_layers=layers,
            text_heads=heads, text_kv_heads=kv_heads, text_intermediate_size=intermediate or 4 * hidden, vision_embed_dim=128,
            vision_heads=4, vision_depth=4, max_pixels=896 * 896))
    return Qwen2VLAdapter.load(AdapterConfig(model=model_dir, dtype=dtype, device=device)), model_dir


def load_deep_from(args):
    """:func:`load_deep` with the command line's model, shape, device and dtype."""
    return load_deep(args.hidden, args.layers, args.model, args.device, args.dtype, heads=args.heads,
                     kv_heads=args.kv_heads, intermediate=args.intermediate)


def synthetic(n: int, side: int = 224, start: int = 0):
    from creg_synthetic.scenes import scene_sample

    return [scene_sample(0, start + i, (side, side)) for i in range(n)]


def sources(names):
    from creg.plugins.manager import get_plugins

    plugins = get_plugins()
    return [plugins.load("source", n)() for n in names]


# -- batch sizes ----------------------------------------------------------------------------
def section_batch(args) -> None:
    from creg.explain.pipeline import ScoringSettings, explain_batch

    if args.batch_model == "toy":
        adapter, label = load_toy(args.device, args.dtype), "toy model"
    else:
        adapter, _ = load_deep_from(args)
        label = f"{args.model or 'deep random model'}, {args.batch_tokens} vision tokens"
    srcs = sources(TABLE1)
    samples = synthetic(args.n_batch, TOKEN_SIDES[args.batch_tokens])
    plain, cos = ScoringSettings(), ScoringSettings(cos=True)

    def run(size, settings):
        for i in range(0, len(samples), size):
            explain_batch(samples[i:i + size], srcs, adapter, settings)

    run(4, plain)  # warm-up
    for _ in range(2):  # and COS's first calls
        explain_batch(samples[:1], srcs, adapter, cos)
    times: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for size in (1, 4, 16):
            times.setdefault(f"b{size}", []).append(cpu_time(lambda: run(size, plain)))
        for size in (1, 16):
            times.setdefault(f"b{size}+cos", []).append(cpu_time(lambda: run(size, cos)))
    sps = {k: len(samples) / min(v) for k, v in times.items()}
    clock = "wall time, CUDA-synchronised" if _CUDA else "CPU time"
    print(f"\n## Batch size ({label}, Table-1 sources, {len(samples)} samples, {clock}, best of {args.repeats})\n")
    print("| batch size | samples/s | vs batch 1 | with --cos: samples/s | --cos adds |")
    print("|---:|---:|---:|---:|---:|")
    for size in (1, 4, 16):
        c = sps.get(f"b{size}+cos")
        extra = f"| {c:.1f} | {sps[f'b{size}'] / c - 1:+.2f}x |" if c else "| - | - |"
        print(f"| {size} | {sps[f'b{size}']:.1f} | {sps[f'b{size}'] / sps['b1']:.2f}x {extra}")


# -- ranks ----------------------------------------------------------------------------------
def _rank_worker(rank: int, size: int, n: int, barrier, results) -> None:
    torch.set_num_threads(1)
    from creg.execution.backends import shard
    from creg.explain.pipeline import ScoringSettings, explain_batch

    adapter = load_toy()
    srcs = sources(TABLE1)
    mine = shard(synthetic(n), rank, size)
    explain_batch(mine[:1], srcs, adapter, ScoringSettings())  # warm-up
    barrier.wait()
    w0, c0 = time.time(), time.process_time()
    for s in mine:
        explain_batch([s], srcs, adapter, ScoringSettings())
    results.put((rank, w0, time.time(), time.process_time() - c0, len(mine)))


def _spread(size: int, n: int) -> tuple[float, list[float]]:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(size), ctx.Queue()
    procs = [ctx.Process(target=_rank_worker, args=(r, size, n, barrier, results)) for r in range(size)]
    for p in procs:
        p.start()
    got = [results.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    wall = max(g[2] for g in got) - min(g[1] for g in got)
    return wall, [g[3] / (g[2] - g[1]) for g in sorted(got)], sum(g[3] for g in got) / sum(g[4] for g in got)


def _command_times(n: int) -> dict[str, tuple[float, float]]:
    """Wall seconds of the whole ``creg run`` command (start-up and model load included) and its
    ``elapsed_s`` (the explain loop and summary, load excluded, in both modes), for one process
    and for ``torchrun --nproc-per-node 2`` on the same samples."""
    import json
    import subprocess

    out = {}
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory(prefix="bench_ranks_") as tmp:
        for label, launcher in (("1 process (creg run)", []),
                                ("2 ranks (torchrun --nproc-per-node 2)",
                                 ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"])):
            run_dir = Path(tmp) / label.split()[0]
            cmd = [sys.executable, *launcher, "-m", "creg", "run", "--adapter", "qwen2vl-toy", "--source",
                   ",".join(TABLE1), "--limit", str(n), "--no-progress", "--out", str(run_dir)]  # --limit: torchrun reads --n as its own
            w0 = time.time()
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out[label] = (time.time() - w0, json.loads((run_dir / "summary.json").read_text())["elapsed_s"])
    return out


def section_commands(args) -> None:
    """The whole ``creg run`` command against the whole ``torchrun`` command (see ``ranks``)."""
    n = args.n_ranks
    times = _command_times(n)
    print(f"\n### The whole command ({n} samples, Table-1 sources, toy model, wall clock)\n")
    print("| mode | whole command (s) | elapsed_s: explain loop (s) |\n|---|---:|---:|")
    for label, (whole, loop) in times.items():
        print(f"| {label} | {whole:.1f} | {loop:.1f} |")


def section_ranks(args) -> None:
    n = args.n_ranks
    rows = []
    for _ in range(args.rank_repeats):
        for size in (1, 2):
            wall, share, cpu_per_sample = _spread(size, n)
            rows.append((size, n / wall, share, cpu_per_sample))
    best = {size: max(r[1] for r in rows if r[0] == size) for size in (1, 2)}
    print(f"\n## Ranks (toy model, Table-1 sources, {n} samples, batch 1, one thread per rank, wall clock)\n")
    print("| ranks | samples/s (best) | vs 1 rank | CPU/wall per rank (1.0 = a whole core) | CPU s per sample |")
    print("|---:|---:|---:|---|---|")
    for size in (1, 2):
        shares = [", ".join(f"{s:.2f}" for s in r[2]) for r in rows if r[0] == size]
        cpu = [f"{r[3]:.3f}" for r in rows if r[0] == size]
        print(f"| {size} | {best[size]:.1f} | {best[size] / best[1]:.2f}x | {' / '.join(shares)} | {' / '.join(cpu)} |")
    if args.rank_commands:
        section_commands(args)


# -- forward-pass units ---------------------------------------------------------------------
def model_inputs(adapter, batch):
    """The model's inputs for ``batch``, preprocessed once (image loading, processor, tokenizer)."""
    return adapter.encode(batch)


def plain_model_forward(adapter, inputs) -> None:
    """1 FPU: the model's own ``model(**inputs)``, no grad, on preprocessed inputs."""
    with torch.no_grad():
        adapter.model(**inputs)


def explain_sources(adapter, batch, srcs):
    """Every source of ``srcs`` explains ``batch`` in one context, planned as a run plans it
    (:mod:`creg.explain.pipeline`); returns the context (backward passes taken, the answers)."""
    from creg.explain.context import ExplainContext

    ctx = ExplainContext.for_sources(batch, adapter, srcs)
    for s in srcs:
        s.explain(ctx)
    return ctx


class OccludedCount:
    """Counts the occluded images COS sends to the model (the adapter's ``occluded_class_logits``)."""

    def __init__(self, adapter):
        self.adapter, self.n = adapter, 0

    def __enter__(self):
        inner = self.adapter.occluded_class_logits

        def counted(samples, images):
            self.n += len(images)
            return inner(samples, images)

        self.adapter.occluded_class_logits = counted
        return self

    def __exit__(self, *exc):
        del self.adapter.occluded_class_logits


#: runs of each side of a ratio (the unit and what it measures, interleaved), the fastest kept
BEST_OF = 3


def best_ratio(fn, unit_fn, k: int = BEST_OF) -> float:
    """CPU time of ``fn`` / CPU time of ``unit_fn``, each the fastest of ``k`` runs taken in turn
    (the same estimator on both sides: a run is only ever slowed by the machine, never sped up)."""
    t, u = [], []
    for _ in range(k):
        u.append(cpu_time(unit_fn))
        t.append(cpu_time(fn))
    return min(t) / min(u)


def _fpu_rows(adapter, samples, names, repeats, *, table1=True, cos=True):
    """Per source (and the Table-1 set, and --cos) CPU time / one plain ``model(**inputs)``
    forward of the same sample (inputs preprocessed once, outside the timing), interleaved: each
    ratio is :func:`best_ratio` of the two, the unit timed in turn with what it measures."""
    from creg.explain.pipeline import ScoringSettings, explain_batch

    inputs = {s.id: model_inputs(adapter, [s]) for s in samples}

    def plain(batch):
        plain_model_forward(adapter, inputs[batch[0].id])

    built = {n: sources([n]) for n in names}
    t1 = sources(TABLE1)
    explain_sources(adapter, samples[:1], t1)  # warm-up
    if cos:  # and COS's first calls
        explain_batch(samples[:1], t1, adapter, ScoringSettings(cos=True))
    ratios: dict[str, list[float]] = {}
    for _ in range(repeats):
        for s in samples:
            batch = [s]
            unit = min(cpu_time(lambda: plain(batch)) for _ in range(2))
            for n in names:
                ratios.setdefault(n, []).append(best_ratio(lambda: explain_sources(adapter, batch, built[n]), lambda: plain(batch)))
            if table1:
                ratios.setdefault("Table-1 set", []).append(best_ratio(lambda: explain_sources(adapter, batch, t1), lambda: plain(batch)))
            if cos:
                a = cpu_time(lambda: explain_batch(batch, t1, adapter, ScoringSettings()))
                with OccludedCount(adapter) as count:
                    b = cpu_time(lambda: explain_batch(batch, t1, adapter, ScoringSettings(cos=True)))
                u = min(unit, cpu_time(lambda: plain(batch)))
                ratios.setdefault("--cos adds (x run)", []).append(b / a - 1)
                ratios.setdefault("--cos adds (FPU)", []).append((b - a) / u)
                ratios.setdefault("occluded images", []).append(count.n)
                ratios.setdefault("--cos adds / (images x 1 FPU)", []).append((b - a) / u / max(count.n, 1))
            ratios.setdefault("adapter.forward (preprocessing included)", []).append(
                best_ratio(lambda: adapter.forward(batch), lambda: plain(batch)))
    return ratios


COS_ROWS = ["--cos adds (x run)", "--cos adds (FPU)", "occluded images", "--cos adds / (images x 1 FPU)"]
FPU_ROWS = ["adapter.forward (preprocessing included)", *PER_SOURCE, "Table-1 set", *COS_ROWS]


def _memory_phases(adapter, sample, *, release: bool):
    """Peak MiB per phase of the Table-1 set + COS on one sample."""
    from creg.explain.context import ExplainContext
    from creg.explain.occlusion import CosQuery, causal_occlusion
    from creg.core.compass import project_to_compass

    device = adapter.device
    t1 = sources(TABLE1)
    out = {}
    start = torch.cuda.memory_allocated() if device.type == "cuda" else _status("VmRSS")
    with PhasePeak(device) as m:
        with torch.no_grad():
            adapter.forward([sample])
    out["plain forward"] = m.mib
    ctx = ExplainContext.for_sources([sample], adapter, t1)
    with PhasePeak(device) as m:
        ctx.output  # noqa: B018
    out["shared forward (graph kept)"] = m.mib
    maps = {}
    for s in t1:
        with PhasePeak(device) as m:
            maps[s.name] = s.explain(ctx)[0]
        out[f"  {s.name}"] = m.mib
    queries = []
    for name, rmap in maps.items():
        c = project_to_compass(rmap.values, sample.ref_box, sample.tgt_box, sample.image_size, cell_xy=rmap.cell_xy)
        queries.append(CosQuery(0, c.peak_sector, sample.ref_box.center, c.r_max))
    cell_xy = [ctx.layout(0).cell_xy]
    if release:
        ctx.release()
    with PhasePeak(device) as m:
        causal_occlusion(adapter, [sample], queries, k=8, rho_r=2.0, cell_xy=cell_xy)
    # above the RSS before the shared forward: what the graph still held counts here
    key = "COS, graph freed first (now)" if release else "COS, graph still alive (before)"
    out[key + ": above the level before the shared forward"] = m.mib + (m.base - start) / 2**20
    return out


def section_fpu(args) -> None:
    adapter, model_dir = load_deep_from(args)
    cfg = adapter.model.config
    print(f"\n## Forward-pass units (random Qwen2-VL: {cfg.text_config.num_hidden_layers} decoder layers, hidden "
          f"{cfg.text_config.hidden_size}, vision depth {cfg.vision_config.depth}; {'wall time, CUDA-synchronised' if _CUDA else 'CPU time, one thread'})\n")
    tokens = [int(t) for t in args.tokens.split(",")]
    results, units, seqs = {}, {}, {}
    for tok in tokens:
        side = TOKEN_SIDES[tok]
        samples = synthetic(args.n_fpu, side)
        seqs[tok] = int(adapter.encode(samples[:1])["input_ids"].shape[1])
        per_source = [n for n in args.per_source.split(",") if n]
        names = per_source if tok <= args.per_source_max else [n for n in per_source if n == "gradcam"]
        inputs = model_inputs(adapter, samples[:1])
        units[tok] = min(cpu_time(lambda: plain_model_forward(adapter, inputs)) for _ in range(2))
        results[tok] = _fpu_rows(adapter, samples, names, args.repeats, cos=tok <= args.cos_max)
        print(f"  measured {tok} tokens", file=sys.stderr, flush=True)
    print_table("FPU (median)", tokens, [
        ("1 FPU = model(**inputs) (s CPU)", [f"{units[t]:.3f}" for t in tokens]),
        ("sequence length", [str(seqs[t]) for t in tokens]),
        *((row, [f"{med(results[t][row]):.2f}" if row in results[t] else "-" for t in tokens]) for row in FPU_ROWS)])

    if args.no_toy:
        return
    toy = load_toy(args.device, args.dtype)
    r = _fpu_rows(toy, synthetic(args.n_fpu), PER_SOURCE, args.repeats)
    print("\n### Toy model (qwen2vl-toy), 64 vision tokens\n")
    print("| FPU (median) | toy |\n|---|---:|")
    for row in FPU_ROWS:
        print(f"| {row} | {med(r[row]):.2f} |")


def section_memory(args) -> None:
    adapter, model_dir = load_deep_from(args)
    tokens = [int(t) for t in args.tokens.split(",")]
    print("\n### Peak memory per phase, Table-1 set + COS, one sample (MiB above the phase's start; "
          "CPU: RSS high-water, see the script's docstring)\n")
    mem = {}
    for tok in tokens:
        s = synthetic(1, TOKEN_SIDES[tok])[0]
        mem[tok] = _memory_phases(adapter, s, release=False)
        mem[tok].update(_memory_phases(adapter, s, release=True))
    phases = list(dict.fromkeys(k for t in tokens for k in mem[t]))
    print_table("phase", tokens, ((ph, [f"{mem[t].get(ph, float('nan')):.0f}" for t in tokens]) for ph in phases))


# -- where the Table-1 set's time goes ------------------------------------------------------
def _time_phases(adapter, sample):
    """FPU per phase of the Table-1 set on one sample, in the order a run takes them, and
    GradCAM's floor: its forward with the graph from the vision output, its backward, and the
    vision tower's share of a plain forward."""
    from creg.explain.context import ExplainContext

    inputs = model_inputs(adapter, [sample])

    def plain():
        plain_model_forward(adapter, inputs)

    unit = min(cpu_time(plain) for _ in range(3))
    out = {}
    srcs = sources(TABLE1)
    ctx = ExplainContext.for_sources([sample], adapter, srcs)
    out["shared forward (graph from the vision output, attentions streamed)"] = cpu_time(lambda: ctx.output) / unit
    for s in srcs:
        out[f"  {s.name}"] = cpu_time(lambda: s.explain(ctx)) / unit
    out["Table-1 set, sum of the phases"] = sum(v for k, v in out.items())
    out["(backward passes taken / targets served by a twin's backward)"] = f"{ctx.backward_passes} / {ctx.shared_backwards}"
    out["(the sample's prediction is its gt: twins share a backward)"] = "yes" if ctx.all_correct else "no"
    # GradCAM alone: its forward and its one backward (z_gt down to the vision output)
    gc = sources(["gradcam"])[0]
    ctx = ExplainContext.for_sources([sample], adapter, [gc])
    out["gradcam alone: forward (graph from the vision output)"] = cpu_time(lambda: ctx.output) / unit
    out["gradcam alone: backward to the vision output"] = cpu_time(lambda: ctx.gradients("gt", [], vision=True)) / unit
    # the vision tower's share of a plain forward (CPU time between its pre- and post-hook)
    visual = getattr(getattr(adapter.model, "model", adapter.model), "visual", None)
    if visual is not None:
        spent = []
        h1 = visual.register_forward_pre_hook(lambda m, a: spent.append(-_clock()))
        h2 = visual.register_forward_hook(lambda m, a, o: spent.append(_clock()))
        try:
            plain()
        finally:
            h1.remove()
            h2.remove()
        out["vision tower (with merger) share of a plain forward"] = sum(spent) / unit
    return out


def _profile_gradcam_backward(adapter, tokens) -> None:
    """torch.profiler on GradCAM's backward (z_gt down to the vision output): which share is
    matrix products (what any backward through the decoder must do) and which is the rest."""
    from torch.profiler import ProfilerActivity, profile

    from creg.explain.context import ExplainContext

    for tok in tokens:
        s = synthetic(1, TOKEN_SIDES[tok])[0]
        gc = sources(["gradcam"])[0]
        for attempt in range(2):  # the first one warms up
            ctx = ExplainContext.for_sources([s], adapter, [gc])
            ctx.output  # noqa: B018
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if _CUDA else [])
            with profile(activities=activities) as prof:
                ctx.gradients("gt", [], vision=True)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:6]
        print(f"\nGradCAM backward at {tok} tokens: {total / 1e3:.0f} ms self CPU (profiled); top ops:")
        for e in top:
            print(f"  {e.key[:60]:60s} {e.self_cpu_time_total / 1e3:8.1f} ms  {100 * e.self_cpu_time_total / total:5.1f} %")


def _scene_costs(adapter, tok: int, repeats: int) -> list[tuple[str, str]]:
    """The Table-1 set's FPU (median of ``repeats`` :func:`best_ratio`) on the first scene of each
    relation, with how the model answers it and the backward passes the set took: creg_gt takes
    creg's gradients (or their negation) when the answer is right (or wrong with the gt the
    runner-up), so the cost depends on the scene."""

    t1 = sources(TABLE1)
    cells = []
    for i in range(4):  # scene_sample: index i has relation RELATIONS[i % 4]
        sample = synthetic(1, TOKEN_SIDES[tok], start=i)[0]
        inputs = model_inputs(adapter, [sample])
        last: list = []

        def run():
            last[:] = [explain_sources(adapter, [sample], t1)]

        run()
        ratio = med([best_ratio(run, lambda: plain_model_forward(adapter, inputs)) for _ in range(repeats)])
        ctx = last[0]
        answer = ("right" if ctx.all_correct else "wrong, gt runner-up" if ctx.all_wrong_gt_runner_up
                  else "wrong")
        cells.append((f"scene {i} ({sample.relation})", f"{ratio:.2f} ({answer}; {ctx.backward_passes} backwards)"))
    return cells


def section_phases(args) -> None:
    adapter, model_dir = load_deep_from(args)
    tokens = [int(t) for t in args.tokens.split(",")]
    print("\n### Where the Table-1 set's time goes (one sample, FPU per phase, median of --repeats)\n")
    res = {}
    for tok in tokens:
        s = synthetic(1, TOKEN_SIDES[tok])[0]
        _time_phases(adapter, s)  # warm-up
        runs = [_time_phases(adapter, s) for _ in range(args.repeats)]
        res[tok] = {k: med([r[k] for r in runs]) if isinstance(runs[0][k], float) else runs[0][k] for k in runs[0]}
        print(f"  measured {tok} tokens", file=sys.stderr, flush=True)
    if args.profile_backward:
        _profile_gradcam_backward(adapter, tokens)
    print_table("phase (FPU)", tokens, (
        (ph, [c if isinstance(c, str) else f"{c:.2f}" for c in (res[t].get(ph, float("nan")) for t in tokens)])
        for ph in dict.fromkeys(k for t in tokens for k in res[t])))
    scenes = {tok: _scene_costs(adapter, tok, args.repeats) for tok in tokens}
    print("\n### The Table-1 set on the first scene of each relation (FPU, median of --repeats; how the model "
          "answers it, backward passes taken)\n")
    print_table("scene", tokens, ((label, [scenes[t][j][1] for t in tokens])
                                  for j, (label, _) in enumerate(scenes[tokens[0]])))


# -- what each COS lever saves ----------------------------------------------------------------
def section_coslevers(args) -> None:
    """COS's occluded passes on one sample in FPU, with and without each lever: p_0 from the
    explained pass (no unoccluded image sent), the answer-row-only last block and the text
    before the image run once per sample (its keys and values shared by the occluded copies)."""
    from creg.core.compass import project_to_compass
    from creg.explain.context import ExplainContext
    from creg.explain.occlusion import CosQuery, causal_occlusion, gt_log_probs

    adapter, _ = load_deep_from(args)
    tokens = [int(t) for t in args.tokens.split(",")]
    on = adapter.options  # the defaults
    off = on.model_copy(update={"answer_only_forward": False, "cached_text_prefix": False})
    answer_row = on.model_copy(update={"answer_only_forward": True, "cached_text_prefix": False})
    prefix = answer_row.model_copy(update={"cached_text_prefix": True})
    rows: dict[int, dict[str, list[float]]] = {}
    lm_rows: dict[int, dict[str, list[float]]] = {}
    for tok in tokens:
        sample = synthetic(1, TOKEN_SIDES[tok])[0]
        inputs = model_inputs(adapter, [sample])
        t1 = sources(TABLE1)
        ctx = ExplainContext.for_sources([sample], adapter, t1)
        queries = []
        for src in t1:
            m = src.explain(ctx)[0]
            c = project_to_compass(m.values, sample.ref_box, sample.tgt_box, sample.image_size, cell_xy=m.cell_xy)
            queries.append(CosQuery(0, c.peak_sector, (m.ref_box or sample.ref_box).center, c.r_max))
        cell_xy = [ctx.layout(0).cell_xy]
        log_p0 = gt_log_probs(ctx.output.class_logits.detach(), [sample.option])
        ctx.release()
        variants = {
            "COS before (p_0 forward, full last block)": (off, None),
            "p_0 from the explained pass": (off, log_p0),
            "+ answer row only (the defaults)": (answer_row, log_p0),
            "+ the text before the image once (cached_text_prefix=true)": (prefix, log_p0),
        }
        out: dict[str, list[float]] = {}
        deltas: dict[str, list[float]] = {}  # every Delta S of the queries, per variant: the levers change no result
        for _ in range(args.repeats):
            for name, (options, p0) in variants.items():
                adapter.options = options
                got: list = []
                with OccludedCount(adapter) as count:
                    spent = cpu_time(lambda: got.append(causal_occlusion(adapter, [sample], queries, k=8, rho_r=2.0,
                                                                         cell_xy=cell_xy, log_p0=p0)))
                adapter.options = on
                unit = min(cpu_time(lambda: plain_model_forward(adapter, inputs)) for _ in range(2))
                out.setdefault(name, []).append(spent / unit)
                out.setdefault(f"{name}: images sent", []).append(count.n)
                deltas[name] = [v for e in got[0] if e for v in (
                    e["peak"]["delta"], e["peak"]["delta_opp"], e["true"]["delta"], e["true"]["delta_opp"],
                    *e["adjacent"]["delta"], e["area_matched"]["delta"])]
        first = next(iter(deltas.values()))
        out["largest |Delta S - before's| over the variants"] = [
            max(abs(a - b) for d in deltas.values() for a, b in zip(d, first))]
        rows[tok] = out
        lm_rows[tok] = _prefix_on_the_language_model(adapter, sample, args.repeats)
        print(f"  measured {tok} tokens", file=sys.stderr, flush=True)
    print_medians("What each COS lever saves (one sample, Table-1 sources' queries, K = 8, FPU, median)",
                  "COS occluded passes", rows, tokens, lambda name: ".1e" if name.startswith("largest") else ".2f")
    print_medians("The text prefix on the language model alone (13 rows that differ from the first image token on; "
                  "s CPU, median)", "language model", lm_rows, tokens,
                  lambda name: ".0f" if name in ("shared positions", "sequence length") else ".3f")


def _prefix_on_the_language_model(adapter, sample, repeats: int, n: int = 13) -> dict[str, list[float]]:
    """The language model on ``n`` rows of ``sample`` whose embeddings differ from the first image
    token on: every position, the shared text kept (:class:`creg.hf.shared_prefix.SharedPrefix`),
    and the rows' own positions alone (the bound: no prefix at all); then sdpa's attention of
    those rows under its causal kernel and under the explicit mask transformers gives a query
    shorter than its keys."""
    import torch.nn.functional as F

    from creg.hf.shared_prefix import PrefixMemo, SharedPrefix

    lm = adapter.model.get_decoder()
    inputs = model_inputs(adapter, [sample] * n)
    seen: dict = {}
    handle = lm.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    with torch.no_grad():
        adapter.model(**inputs, use_cache=False, logits_to_keep=1)
    handle.remove()
    p = int((inputs["input_ids"][0] == adapter.model.config.image_token_id).nonzero()[0])
    gen = torch.Generator().manual_seed(0)
    embeds = seen["inputs_embeds"].clone()
    embeds[:, p:] += 0.01 * torch.randn(embeds[:, p:].shape, generator=gen)
    kw = {**seen, "inputs_embeds": embeds}
    pos, memo = kw["position_ids"], PrefixMemo()

    def every():
        with torch.no_grad():
            lm(**kw)

    def kept():
        with torch.no_grad(), SharedPrefix(lm, memo):
            lm(**kw)

    def bound():
        with torch.no_grad():
            lm(inputs_embeds=embeds[:, p:], position_ids=pos[..., p:], attention_mask=kw["attention_mask"][:, p:])

    cfg = lm.config
    heads, width = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    s = embeds.shape[1]
    q, k, v = (torch.randn(n, heads, s, width, generator=gen) for _ in range(3))
    allowed = torch.ones(s, s, dtype=torch.bool).tril()[p:]

    def causal():
        F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def masked():
        F.scaled_dot_product_attention(q[:, :, p:], k, v, attn_mask=allowed)

    variants = {
        "every position (before)": every,
        "the text before the image kept, the rest with its keys and values (now)": kept,
        "the rest alone, no prefix (the bound)": bound,
        "sdpa, one layer's attention (ms): every query, causal kernel": causal,
        "sdpa, one layer's attention (ms): the queries after the prefix, explicit mask": masked,
    }
    kept()  # the prefix's own pass, kept for the rest (as a run keeps it across samples)
    out: dict[str, list[float]] = {"shared positions": [p], "sequence length": [s]}
    for _ in range(repeats):
        for name, fn in variants.items():
            out.setdefault(name, []).append(cpu_time(fn) * (1000 if name.startswith("sdpa") else 1))
    return out


# -- Captum ---------------------------------------------------------------------------------
def section_levers(args) -> None:
    """The explained pass's text before the image (``text_prefix_once`` off / on, the Table-1 set,
    interleaved) and COS's rows per call (one occluded row's cost in calls of 1, of the
    ``occluded_tokens_per_call=auto`` size, and of all 14), in FPU."""
    from creg.hf.adapter import AUTO_OCCLUDED_TOKENS_PER_CALL

    adapter, _ = load_deep_from(args)
    tokens = [int(t) for t in args.tokens.split(",")]
    defaults = adapter.options
    t1 = sources(TABLE1)
    rows: dict[int, dict[str, list[float]]] = {}
    for tok in tokens:
        sample = synthetic(1, TOKEN_SIDES[tok])[0]
        inputs = model_inputs(adapter, [sample])
        seq = int(inputs["input_ids"].shape[1])

        def plain():
            plain_model_forward(adapter, inputs)

        def table1(once):
            adapter.options = defaults.model_copy(update={"text_prefix_once": once})
            explain_sources(adapter, [sample], t1)

        def occluded(n):
            with torch.inference_mode():
                adapter.forward([sample] * n)

        auto = max(1, AUTO_OCCLUDED_TOKENS_PER_CALL // seq)
        out: dict[str, list[float]] = {}
        table1(True), table1(False), occluded(1)
        for _ in range(args.repeats):
            for once in (False, True):
                out.setdefault(f"Table-1 set, text before the image {'once per run' if once else 'in the graph'}",
                               []).append(best_ratio(lambda: table1(once), plain))
            for label, n in (("1 row", 1), (f"auto: {auto} rows", auto), ("14 rows", 14)):
                out.setdefault(f"occluded row, calls of {label}" if label != f"auto: {auto} rows" else
                               "occluded row, calls of the auto size", []).append(best_ratio(lambda: occluded(n), plain) / n)
        out["(rows per call, auto)"] = [auto]
        adapter.options = defaults
        rows[tok] = out
        print(f"  measured {tok} tokens", file=sys.stderr, flush=True)
    print_medians("Levers of this change (FPU, median of --repeats)", "lever", rows, tokens,
                  lambda name: ".0f" if name.startswith("(") else ".2f")


def section_captum(args) -> None:
    from bench_sources import captum_full_model_lig  # this script's folder is on sys.path when it runs
    from captum.attr import LayerIntegratedGradients

    from creg.plugins.adapter import ForwardRequest
    from creg.sources.integrated_gradients import layer_integrated_gradients

    adapter, _ = load_deep_from(args)
    text = adapter.model.model.language_model
    last = text.layers[-1]
    option_ids = list(adapter.option_token_ids)
    print("\n## Integrated gradients vs Captum LayerIntegratedGradients (layer -2, zero baseline at the layer, "
          "50 Gauss-Legendre steps, 25 path points per call, target z_gt; CPU time, one thread)\n")
    print("| vision tokens | creg IG (FPU) | creg whole `integrated_gradients` explain (FPU) | Captum, forward from layer -2 (FPU) "
          "| ratio | Captum, full model (FPU) | ratio | max abs diff (top / full) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for tok in [int(t) for t in args.tokens.split(",")]:
        sample = synthetic(1, TOKEN_SIDES[tok])
        gt = torch.tensor([s.option for s in sample])
        batch = adapter.encode(sample)
        kwargs = {}

        def grab(module, a, kw):
            kwargs.update(kw)

        h = last.register_forward_pre_hook(grab, with_kwargs=True)
        with torch.no_grad():
            adapter.model(**batch, use_cache=False, logits_to_keep=1)
        h.remove()

        def top_of_model(hid):
            r = hid.shape[0]
            kw = {k: (v.expand(r, *v.shape[1:]) if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == 1 else v)
                  for k, v in kwargs.items()}
            if "position_embeddings" in kw:
                kw["position_embeddings"] = tuple(p.expand(r, *p.shape[1:]) if p.shape[0] == 1 else p
                                                  for p in kw["position_embeddings"])
            out = last(hid, **kw)
            out = out[0] if isinstance(out, tuple) else out
            return adapter.model.lm_head(text.norm(out)[:, -1])[:, option_ids]

        def ours():
            out = adapter.forward(sample, ForwardRequest(layers=(-2,)))
            return layer_integrated_gradients(adapter, out, -2, gt, steps=50, chunk=25)

        def whole():
            src = sources(["integrated_gradients"])[0]
            from creg.explain.context import ExplainContext

            src.explain(ExplainContext(sample, adapter, src.request()))

        hid = adapter.forward(sample, ForwardRequest(layers=(-2,))).hidden[-2].detach()
        lig_top = LayerIntegratedGradients(top_of_model, last)

        def captum_top():
            return lig_top.attribute(hid, baselines=torch.zeros_like(hid), target=gt, n_steps=50, method="gausslegendre",
                                     internal_batch_size=25, attribute_to_layer_input=True)

        def captum_full():
            return captum_full_model_lig(adapter.model, batch, last, option_ids, gt, 25, dtype=hid.dtype)

        with torch.no_grad():
            unit = min(cpu_time(lambda: adapter.forward(sample)) for _ in range(2))
        ref = ours().detach()
        t_ours = cpu_time(ours) / unit
        t_whole = cpu_time(whole) / unit
        res_top = {}
        t_top = cpu_time(lambda: res_top.setdefault("a", captum_top())) / unit
        d_top = float((res_top["a"].detach() - ref).abs().max())
        if tok <= args.captum_full_max:
            res_full = {}
            t_full = cpu_time(lambda: res_full.setdefault("a", captum_full())) / unit
            d_full = float((res_full["a"].detach() - ref).abs().max())
            full = f"{t_full:.2f} | {t_full / t_whole:.1f}x"
        else:
            full, d_full = "- | -", float("nan")
        scale = float(ref.abs().max())
        print(f"| {tok} | {t_ours:.2f} | {t_whole:.2f} | {t_top:.2f} | {t_top / t_whole:.1f}x | {full} | "
              f"{d_top:.1e} / {d_full:.1e} (max |attr| {scale:.1e}) |", flush=True)


# -- profile --------------------------------------------------------------------------------
def section_profile(args) -> None:
    from torch.profiler import ProfilerActivity, profile

    from creg.explain.pipeline import ScoringSettings, explain_batch

    adapter = load_toy(args.device, args.dtype)
    srcs = sources(TABLE1)
    samples = synthetic(8)
    explain_batch(samples[:1], srcs, adapter, ScoringSettings())
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if _CUDA else [])
    with profile(activities=activities) as prof:
        for s in samples:
            explain_batch([s], srcs, adapter, ScoringSettings())
        if _CUDA:
            torch.cuda.synchronize()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    where = "CPU and CUDA" if _CUDA else "CPU"
    print(f"\n## Profile (toy model, Table-1 sources, {len(samples)} samples at batch 1, torch.profiler {where})\n")
    print("| op | self CPU % | calls per sample |\n|---|---:|---:|")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]:
        print(f"| {e.key} | {100 * e.self_cpu_time_total / total:.1f} | {e.count / len(samples):.0f} |")
    if _CUDA:
        dev_total = sum(getattr(e, "self_device_time_total", 0) for e in events) or 1
        print("\n| op | self CUDA % | calls per sample |\n|---|---:|---:|")
        for e in sorted(events, key=lambda e: -getattr(e, "self_device_time_total", 0))[:10]:
            print(f"| {e.key} | {100 * getattr(e, 'self_device_time_total', 0) / dev_total:.1f} | {e.count / len(samples):.0f} |")
    sync_ops = ("aten::item", "aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize",
                "cudaMemcpyAsync", "cudaEventSynchronize")
    syncs = {e.key: round(e.count / len(samples), 1) for e in events if e.key in sync_ops}
    print(f"\nhost synchronisations per sample (on CUDA each waits for the device): {syncs or 'none'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default="batch,ranks,fpu,memory,captum,profile")
    p.add_argument("--model", help="an existing Qwen2-VL checkpoint dir for fpu/memory/captum/batch (default: build a "
                   "small random one); build_7b(DIR) writes one of Qwen2-VL-7B-Instruct's shape (scripts/gpu_check.sh)")
    p.add_argument("--batch-model", choices=("toy", "deep"), default="toy", help="batch: the toy model or --model/--hidden")
    p.add_argument("--batch-tokens", type=int, choices=sorted(TOKEN_SIDES), default=64, help="batch: vision tokens per sample")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--heads", type=int, default=None, help="attention heads of the random model (default hidden/64)")
    p.add_argument("--kv-heads", type=int, default=2, help="key/value heads of the random model (Qwen2-VL-7B: 28 heads, 4 KV)")
    p.add_argument("--intermediate", type=int, default=None, help="MLP width of the random model (default 4 x hidden; "
                   "Qwen2-VL-7B: 5.29 x)")
    p.add_argument("--tokens", default="64,256,1024")
    p.add_argument("--per-source-max", type=int, default=256, help="per-source FPU up to this many tokens (Table-1 set and GradCAM always)")
    p.add_argument("--per-source", default=",".join(PER_SOURCE), help="fpu: the sources measured one by one "
                   "(comma-separated; empty: only the Table-1 set)")
    p.add_argument("--cos-max", type=int, default=256)
    p.add_argument("--captum-full-max", type=int, default=64, help="full-model Captum up to this many tokens")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--n-batch", type=int, default=16)
    p.add_argument("--n-ranks", type=int, default=32)
    p.add_argument("--rank-repeats", type=int, default=2)
    p.add_argument("--no-rank-commands", dest="rank_commands", action="store_false",
                   help="ranks: leave out the whole-command timing of creg run against torchrun")
    p.add_argument("--n-fpu", type=int, default=1)
    p.add_argument("--no-toy", action="store_true", help="fpu: leave out the toy model's column")
    p.add_argument("--profile-backward", action="store_true", help="phases: also profile GradCAM's backward by op")
    p.add_argument("--device", default="cpu", help="fpu/memory/captum: cpu, cuda, auto")
    p.add_argument("--dtype", default="float32", help="fpu/memory/captum: float32, bfloat16, auto (bf16 on CUDA)")
    args = p.parse_args(argv)
    global _CUDA
    _CUDA = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    torch.set_num_threads(1)
    torch.manual_seed(0)
    sections = [name.strip() for name in args.sections.split(",")]
    if "memory" in sections:
        # only for the memory section: every tensor above 64 KiB becomes a fresh mmap, whose page
        # faults count as CPU time -- it inflated passes that keep a graph by ~25 % (run `memory`
        # in a process of its own)
        lower_mmap_threshold()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.1f} at start"
          f"{'; glibc mmap threshold lowered to 64 KiB (memory section)' if 'memory' in sections else ''}")
    for name in sections:
        t0 = time.time()
        globals()[f"section_{name}"](args)
        print(f"({name}: {time.time() - t0:.0f} s wall)", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
