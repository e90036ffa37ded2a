#!/usr/bin/env python
"""Speed and memory of every relevance source, in forward-pass units, next to Captum.

For each sample (batch of one) and each source, a fresh :class:`creg.explain.context.ExplainContext`
with only that source's request is built and ``explain`` is timed -- its own forward pass,
backward passes and replays included. The unit is one plain no-grad forward of the same sample
in the same process (``adapter.forward(samples)``), timed right before. Each measurement is paired with a plain forward
timed just before it (the smaller of that and the per-sample unit is used: load on a shared
machine drifts). Medians over samples x repeats. "all Table-1 sources" runs creg, creg_gt, attention_rollout, gradnorm,
integrated_gradients, gradcam, random and oracle on one shared context (what ``creg run`` does).

Captum equivalents run on the same HF model and inputs:

* creg      -> LayerGradientXActivation on the inputs of the last four blocks (one call, layer
               list), forward returning the contrastive target of Eq. 1;
* gradxact  -> LayerGradientXActivation on the last block's input;
* gradnorm  -> LayerGradientXActivation(multiply_by_inputs=False) on it (the gradient), then the norm;
* gradcam   -> LayerGradientXActivation(multiply_by_inputs=False) on the last vision block's output;
* integrated_gradients -> LayerIntegratedGradients on the last block's input, 50 Gauss-Legendre
               steps, the full model run per path point (Captum derives the layer's path from the
               model input, so it cannot skip the layers below); the zero baseline at the layer is
               made by a multiplier on the layer's input (1 for the input, 0 for the baseline),
               internal batch = our chunk. scripts/bench_throughput.py also runs Captum's fairer
               set-up, a forward that starts at layer -2.

Memory: CUDA -> torch.cuda.max_memory_allocated above the level before the call; CPU -> the
process's RSS high-water mark (reset before the call) above its RSS before the call, with
glibc's mmap threshold lowered so that freed tensors leave RSS.

Example (the docs/speed.md run)::

    python scripts/bench_sources.py --hidden 512 --text-layers 28 --n 4 --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

TABLE1 = ["creg", "creg_gt", "attention_rollout", "gradnorm", "integrated_gradients", "gradcam", "random", "oracle"]
SOURCES = ["creg", "creg_gt", "gradxact", "gradnorm", "gradcam", "integrated_gradients", "attention_rollout",
           "target_box", "random_ref", "random", "oracle"]


class PeakMemory:
    """Peak memory (MiB) above the level at entry: CUDA allocator, or on CPU the process's RSS
    high-water mark (VmHWM, reset at entry through /proc/self/clear_refs) above its RSS at entry.
    main() lowers glibc's mmap threshold so that freed tensors leave RSS: the earlier version
    read RSS growth, which misses memory the allocator already held (0 MiB for most sources)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mib = 0.0

    @staticmethod
    def _status(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
        return 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self._base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._base = self._status("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mib = (torch.cuda.max_memory_allocated() - self._base) / 2**20
        else:
            self.peak_mib = (self._status("VmHWM") - self._base) / 2**20


def timed(fn, device):
    with PeakMemory(device) as mem:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    return dt, mem.peak_mib


def captum_runners(adapter, samples, chunk):
    """name -> zero-argument callable running the Captum equivalent on ``samples``."""
    from captum.attr import LayerGradientXActivation

    from creg.explain.context import contrastive_target

    batch = adapter.encode(samples)
    b = len(samples)
    option_ids = list(adapter.option_token_ids)
    gt = torch.tensor([s.option for s in samples], device=adapter.device)
    text = adapter.model.model.language_model
    vision_last = adapter.model.model.visual.blocks[-1]

    def option_logits(input_ids):
        r = input_ids.shape[0] // b
        # every other input (mask, token types, pixel patches, grids) stacked r times along dim 0:
        # row i of the expanded batch is sample i % b, as Captum expands input_ids
        rest = {k: v.repeat(r, *([1] * (v.dim() - 1))) for k, v in batch.items() if k != "input_ids"}
        out = adapter.model(input_ids=input_ids, **rest, use_cache=False, logits_to_keep=1)
        return out.logits[:, -1, option_ids].float()

    def contrastive(input_ids):
        z = option_logits(input_ids)
        return contrastive_target(z, z.detach().argmax(1))[:, None]

    ids = batch["input_ids"]
    four = [text.layers[i] for i in (-1, -2, -3, -4)]
    lgxa = lambda layer, **kw: LayerGradientXActivation(option_logits, layer, **kw)
    return {
        "creg": lambda: LayerGradientXActivation(contrastive, four).attribute(ids, target=0, attribute_to_layer_input=True),
        "gradxact": lambda: lgxa(text.layers[-1]).attribute(ids, target=gt, attribute_to_layer_input=True),
        "gradnorm": lambda: lgxa(text.layers[-1], multiply_by_inputs=False).attribute(
            ids, target=gt, attribute_to_layer_input=True).norm(dim=-1),
        "gradcam": lambda: lgxa(vision_last, multiply_by_inputs=False).attribute(ids, target=gt),
        # zero baseline *at the layer*: a multiplier on the last block's input (1 for the input, 0 for the
        # baseline); the earlier `baselines=ids` made the layer's baseline equal its input (all-zero attributions)
        "integrated_gradients": lambda: captum_full_model_lig(adapter.model, batch, text.layers[-1], option_ids, gt, chunk * b),
    }


def captum_full_model_lig(model, batch, layer, option_ids, gt, internal_batch_size, dtype=torch.float32):
    """Captum ``LayerIntegratedGradients`` on the full model (every path point a whole forward),
    zero baseline at ``layer``'s input: a multiplier g on that input (1: the input, 0: the
    baseline), set by a pre-hook while the model runs. ``batch``: the encoded samples (b rows);
    Captum's expanded rows r * b are the batch stacked r times. Also used by bench_throughput.py."""
    from captum.attr import LayerIntegratedGradients

    b = gt.shape[0]
    state = {}

    def option_logits_gated(g):
        r = g.shape[0] // b
        state["g"] = g
        try:
            rest = {k: v.repeat(r, *([1] * (v.dim() - 1))) for k, v in batch.items()}
            out = model(**rest, use_cache=False, logits_to_keep=1)
        finally:
            state.pop("g", None)
        return out.logits[:, -1, option_ids].float()

    def scale_input(module, args, kwargs):
        g = state.get("g")
        if g is None:
            return None
        if args:
            return (args[0] * g.view(-1, 1, 1).to(args[0].dtype), *args[1:]), kwargs
        kwargs = dict(kwargs)
        kwargs["hidden_states"] = kwargs["hidden_states"] * g.view(-1, 1, 1).to(kwargs["hidden_states"].dtype)
        return args, kwargs

    handle = layer.register_forward_pre_hook(scale_input, with_kwargs=True, prepend=True)
    try:
        one = torch.ones(b, dtype=dtype, device=gt.device)
        return LayerIntegratedGradients(option_logits_gated, layer).attribute(
            one, baselines=torch.zeros_like(one), target=gt, n_steps=50, method="gausslegendre",
            internal_batch_size=internal_batch_size, attribute_to_layer_input=True)
    finally:
        handle.remove()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="an existing Qwen2-VL checkpoint dir (default: build a random-init one)")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--text-layers", type=int, default=28)
    p.add_argument("--n", type=int, default=4, help="samples (synthetic scenes)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--captum-repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--image", type=int, default=224, help="square image side (px)")
    p.add_argument("--no-captum", action="store_true")
    p.add_argument("--sources", help="comma-separated subset of the sources to time (default: all)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    try:  # freed tensors leave RSS, so the per-call high-water mark sees every allocation
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD
    except OSError:
        pass
    torch.manual_seed(0)
    from creg.plugins.adapter import AdapterConfig
    from creg.explain.context import ExplainContext
    from creg.plugins.manager import get_plugins
    from creg_qwen2vl.adapter import Qwen2VLAdapter
    from creg_synthetic.scenes import scene_sample

    model_dir = args.model
    if model_dir is None:
        from creg_qwen2vl.tiny import build_tiny_qwen2vl

        model_dir = str(build_tiny_qwen2vl(
            Path(tempfile.mkdtemp(prefix="bench_qwen2vl_")), seed=0,
            text_hidden_size=args.hidden, text_layers=args.text_layers, text_heads=8, text_kv_heads=2,
            text_intermediate_size=4 * args.hidden, vision_embed_dim=128, vision_heads=4, vision_depth=4,
        ))
    adapter = Qwen2VLAdapter.load(AdapterConfig(model=model_dir, dtype=args.dtype, device=args.device))
    device = adapter.device
    plugins = get_plugins()
    samples = [scene_sample(0, i, (args.image, args.image)) for i in range(args.n)]
    chunk = 25

    def plain_forward(batch):
        with torch.no_grad():
            adapter.forward(batch)

    units: dict[str, list[float]] = {}
    mems: dict[str, list[float]] = {}
    seq_lens = []

    def record(name, batch, fn, unit):
        # paired with a plain forward right before it: the shared machine's load drifts
        unit = min(unit, timed(lambda: plain_forward(batch), device)[0])
        dt, mib = timed(fn, device)
        units.setdefault(name, []).append(dt / unit)
        mems.setdefault(name, []).append(mib)

    def run_sources(batch, names):
        srcs = [plugins.load("source", n)() for n in names]
        if hasattr(ExplainContext, "for_sources"):
            ctx = ExplainContext.for_sources(batch, adapter, srcs)
        else:  # creg before the source requests (for before/after comparisons)
            from creg.explain.context import merge_requests

            ctx = ExplainContext(batch, adapter, merge_requests([s.request() for s in srcs]))
        for s in srcs:
            s.explain(ctx)

    # warm-up (allocator, lazy imports)
    run_sources(samples[:1], SOURCES)
    captum = None if args.no_captum else captum_runners(adapter, samples[:1], chunk)
    if captum:
        captum["gradxact"]()

    timed_sources = args.sources.split(",") if args.sources else SOURCES
    forward_times = []
    for rep in range(args.repeats):
        for s in samples:
            batch = [s]
            unit = min(timed(lambda: plain_forward(batch), device)[0] for _ in range(2))
            forward_times.append(unit)
            for name in timed_sources:
                record(name, batch, lambda: run_sources(batch, [name]), unit)
            record("all Table-1 sources", batch, lambda: run_sources(batch, TABLE1), unit)
            record("all sources", batch, lambda: run_sources(batch, SOURCES), unit)
            if captum and rep < args.captum_repeats:
                runners = captum_runners(adapter, batch, chunk)
                for name, fn in runners.items():
                    if name in timed_sources:
                        record(f"captum:{name}", batch, fn, unit)
            seq_lens.append(int(adapter.encode(batch)["input_ids"].shape[1]))

    med = lambda xs: statistics.median(xs)
    print(f"device: {device} ({torch.get_num_threads()} threads), dtype {args.dtype}, model {model_dir}")
    cfg = adapter.model.config
    print(f"model: {cfg.text_config.num_hidden_layers} decoder layers, hidden {cfg.text_config.hidden_size}, "
          f"vision depth {cfg.vision_config.depth}; sequence {med(seq_lens)} tokens; "
          f"{args.n} samples x {args.repeats} repeats (Captum x {args.captum_repeats})")
    print(f"1 unit = one plain no-grad forward = {1000 * med(forward_times):.1f} ms (median)\n")
    print("| source | time (forward units) | peak memory (MiB) | Captum equivalent (units) | Captum peak (MiB) | speed-up vs Captum |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in timed_sources + ["all Table-1 sources", "all sources"]:
        u, m = med(units[name]), med(mems[name])
        c = f"captum:{name}"
        if c in units:
            cu, cm = med(units[c]), med(mems[c])
            print(f"| {name} | {u:.2f} | {m:.0f} | {cu:.2f} | {cm:.0f} | {cu / u:.1f}x |")
        else:
            print(f"| {name} | {u:.2f} | {m:.0f} | - | - | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
