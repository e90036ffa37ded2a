"""The model-randomisation sanity check (Adebayo et al. 2018, "Sanity checks for saliency maps").

An explanation of a model's decision must change when the model is destroyed. The check
re-initialises the decoder blocks one at a time, cascading from the top (block N-1, then N-1
and N-2, ...), then also the vision tower, and after each step computes every source's maps on
the same samples again. Per source and step it reports Spearman's rank correlation between each
sample's map and the original model's map (over the map's cells), averaged over the samples.

Re-initialisation: every weight tensor of a re-initialised module is replaced by Gaussian noise
with the trained tensor's own mean and standard deviation (seeded); a constant tensor (a norm's
unit scale, a zero bias) is kept. This keeps each layer's scale, so activations stay finite, and
needs no knowledge of the model's own initialiser. The weights are restored afterwards.

Verdict: a source *fails* when, with every block and the vision tower randomised, the mean
absolute rank correlation of its maps with the original is still >= :data:`MAX_ABS_RHO` -- its
maps barely depend on the model's weights (a position prior, an edge detector, or no model at
all, as in ``random_relevance``). A map that becomes constant has no rank correlation (counted in
``n_constant``); it has changed, so it does not fail.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from creg.core.sample import Sample
from creg.core.spearman import spearman
from creg.explain.context import ExplainContext
from creg.explain.model_parts import model_parts
from creg.plugins.adapter import VLMAdapter

#: a source whose maps keep a mean |Spearman rho| of at least this with the original after the whole
#: model is randomised fails the check.
MAX_ABS_RHO = 0.5


def reinitialise(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Replace every non-constant parameter of ``module`` by N(mean, std) of its own values (in place)."""
    with torch.no_grad():
        for p in module.parameters():
            if p.numel() < 2 or p.device.type == "meta":
                continue
            x = p.detach().float()
            std = float(x.std())
            if not std > 0:
                continue
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float32) * std + float(x.mean())
            p.copy_(noise.to(p.device, p.dtype))


@contextmanager
def restored(modules: Sequence[torch.nn.Module]) -> Iterator[None]:
    """Restore the parameters of ``modules`` on exit (a CPU copy is kept meanwhile)."""
    saved = [[p.detach().to("cpu", copy=True) for p in m.parameters()] for m in modules]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, copies in zip(modules, saved):
                for p, c in zip(m.parameters(), copies):
                    p.copy_(c.to(p.device))


def source_maps(adapter: VLMAdapter, sources: Sequence[Any], samples: Sequence[Sample], *, seed: int,
                batch_size: int = 1) -> dict[str, list[np.ndarray]]:
    """``{source: [map values (h * w,) per sample]}`` from one explain pass per batch."""
    out: dict[str, list[np.ndarray]] = {s.name: [] for s in sources}
    for start in range(0, len(samples), batch_size):
        batch = list(samples[start:start + batch_size])
        ctx = ExplainContext.for_sources(batch, adapter, sources, seed=seed)
        for src in sources:
            for m in src.explain(ctx):
                out[src.name].append(m.values.detach().float().cpu().numpy().ravel())
        ctx.release()
    return out


def randomisation_steps(num_blocks: int, has_vision: bool) -> list[tuple[str, list[int], bool]]:
    """``[(label, blocks randomised, vision randomised)]``: the top block, the top two, ..., all, then the vision tower."""
    steps = [(f"blocks {num_blocks - k}..{num_blocks - 1}" if k > 1 else f"block {num_blocks - 1}",
              list(range(num_blocks - k, num_blocks)), False) for k in range(1, num_blocks + 1)]
    if has_vision:
        steps.append(("+ vision tower", list(range(num_blocks)), True))
    return steps


def randomize(adapter: VLMAdapter, sources: Sequence[Any], samples: Sequence[Sample], *, seed: int = 0,
              batch_size: int = 1, log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """The cascading randomisation check (module docstring). Returns ``{"steps": [labels], "n", "threshold",
    "sources": {name: {"rho": [mean rho per step], "abs_rho": [...], "n_constant": [...], "fails": bool}}}``."""
    parts = model_parts(adapter, "creg analyze randomize")
    samples = list(samples)
    original = source_maps(adapter, sources, samples, seed=seed, batch_size=batch_size)
    steps = randomisation_steps(len(parts.blocks), parts.vision is not None)
    modules = list(parts.blocks) + ([parts.vision] if parts.vision is not None else [])
    result: dict[str, Any] = {"n": len(samples), "threshold": MAX_ABS_RHO, "steps": [s[0] for s in steps],
                              "sources": {s.name: {"rho": [], "abs_rho": [], "n_constant": []} for s in sources}}
    generator = torch.Generator().manual_seed(seed)
    done_blocks: set[int] = set()
    with restored(modules):
        for label, blocks, vision in steps:
            for b in blocks:
                if b not in done_blocks:
                    reinitialise(parts.blocks[b], generator)
                    done_blocks.add(b)
            if vision:
                reinitialise(parts.vision, generator)
            log(f"randomised {label}")
            now = source_maps(adapter, sources, samples, seed=seed, batch_size=batch_size)
            for name, maps in now.items():
                rhos = [spearman(a, b) for a, b in zip(original[name], maps)]
                defined = np.array([r for r in rhos if r is not None], dtype=np.float64)
                row = result["sources"][name]
                row["rho"].append(float(defined.mean()) if defined.size else None)
                row["abs_rho"].append(float(np.abs(defined).mean()) if defined.size else None)
                row["n_constant"].append(len(rhos) - int(defined.size))
    for row in result["sources"].values():
        last = row["abs_rho"][-1] if row["abs_rho"] else None
        row["fails"] = bool(last is not None and last >= MAX_ABS_RHO)
    return result


def randomize_markdown(result: dict[str, Any], title: str = "") -> str:
    """The check as a table (rows: steps; columns: sources; cells: mean Spearman rho) and a verdict per source."""
    names = list(result["sources"])
    lines = [f"### {title}", ""] if title else []
    lines += [f"Mean Spearman ρ of each map with the original model's (n={result['n']} samples), re-initialising "
              "decoder blocks from the top, then the vision tower.", "",
              "| Randomised | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for i, step in enumerate(result["steps"]):
        cells = []
        for n in names:
            v = result["sources"][n]["rho"][i]
            c = result["sources"][n]["n_constant"][i]
            cells.append(("–" if v is None else f"{v:+.3f}") + (f" ({c} constant)" if c else ""))
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines.append("")
    for n in names:
        s = result["sources"][n]
        last = s["abs_rho"][-1] if s["abs_rho"] else None
        shown = "–" if last is None else f"{last:.3f}"
        if s["fails"]:
            lines.append(f"- ⚠ {n}: FAILS the randomisation check: its maps barely change when the whole model is "
                         f"randomised (mean |ρ| {shown} ≥ {result['threshold']})")
        else:
            lines.append(f"- {n}: passes (mean |ρ| {shown} < {result['threshold']} with the whole model randomised)")
    return "\n".join(lines) + "\n"
