"""The one scoring pipeline: samples, relevance sources and a model (or none) to scored records.

:func:`score_map` takes a sample, one relevance map and the settings to a scored row (Eq. 4-7);
:func:`explain_batch` runs a batch through the shared forward pass, every source, the scoring
and (``cos``) causal occlusion. ``creg run`` (:mod:`creg.execution.runner`), ``creg explain`` and the
analyses all score through these two functions.

Wrong output from a plugin is an error of the sample it concerns, named by plugin
(:class:`PluginOutputError`): a source returning a different number of maps than samples, a
map whose ``values`` is not a 2-D grid or whose ``cell_xy`` does not match it, an adapter whose
class logits are not ``(b, 4)`` or not finite. An exception raised inside a plugin is
re-raised as :class:`PluginError` naming it.
"""

from __future__ import annotations

import math
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from pydantic import BaseModel, Field

from creg.core.compass import Compass, project_to_compass, uniform_cell_xy
from creg.core.ground_truth import ground_truth_scores
from creg.core.measures import direction_alignment_error, edge_hit
from creg.core.records import SampleFacts, SourceRow
from creg.core.sample import RELATIONS, Sample
from creg.explain.context import ExplainContext
from creg.explain.occlusion import CosQuery, Operator, causal_occlusion, gt_log_probs
from creg.plugins.relevance import RelevanceMap
from creg.store import StoredMap


class ScoringSettings(BaseModel):
    """How maps are scored: the compass (Eq. 4-5) and causal occlusion (Eq. 8)."""

    k: int = Field(8, ge=1)
    sigma_r: float = Field(0.6, gt=0)
    rho_r: float = Field(2.0, gt=0)
    cos: bool = False
    cos_op: Operator = "grey"

    @classmethod
    def from_config(cls, config) -> "ScoringSettings":
        """The settings of a :class:`creg.config.run_config.RunConfig`."""
        return cls(k=config.k, sigma_r=config.sigma_r, rho_r=config.rho_r, cos=config.cos, cos_op=config.cos_op)


class PluginError(RuntimeError):
    """A plugin raised while processing samples; ``plugin`` names it (e.g. ``source 'creg'``)."""

    def __init__(self, plugin: str, message: str):
        super().__init__(f"{plugin}: {message}")
        self.plugin = plugin


class PluginOutputError(PluginError):
    """A plugin returned output that breaks its contract (count, shape, non-finite logits)."""


@dataclass
class SampleError:
    """One sample that could not be scored, and why."""

    sample_id: str
    plugin: str | None
    error: BaseException
    traceback: str = ""

    @property
    def reason(self) -> str:
        err = self.error.__cause__ if isinstance(self.error, PluginError) and not isinstance(self.error, PluginOutputError) \
            and self.error.__cause__ is not None else self.error
        return type(err).__name__


@dataclass
class BatchResult:
    """The scored samples of a batch (facts + one row per source) and the samples that failed."""

    scored: list[tuple[SampleFacts, list[SourceRow]]] = field(default_factory=list)
    errors: list[SampleError] = field(default_factory=list)
    compasses: dict[tuple[str, str], Compass] = field(default_factory=dict)
    #: {sample id: {source: map}} of the scored samples, with ``keep_maps`` (``creg run --save-maps``)
    maps: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: {sample id: its vision layout} of the scored samples, with ``keep_maps`` and a model
    layouts: dict[str, Any] = field(default_factory=dict)


def short_traceback(e: BaseException, limit: int = 6) -> str:
    """The last ``limit`` frames of ``e`` (and of its cause), for ``skipped.jsonl``."""
    err = e.__cause__ if e.__cause__ is not None else e
    return "".join(traceback.format_exception(type(err), err, err.__traceback__, limit=-limit)).strip()[-3000:]


@contextmanager
def blame(plugin: str) -> Iterator[None]:
    """Re-raise any exception inside the block as :class:`PluginError` naming ``plugin``."""
    try:
        yield
    except PluginError:
        raise
    except Exception as e:  # noqa: BLE001 - re-raised with the plugin's name
        raise PluginError(plugin, f"{type(e).__name__}: {e}") from e


def sample_facts(sample: Sample, settings: ScoringSettings, logits: Sequence[float] | None = None) -> SampleFacts:
    """The per-sample facts: names, boxes, the geometry of the compass (d_AB, r_max, sigma) and
    the model's logits and answer."""
    (xa, ya), (xb, yb) = sample.ref_box.center, sample.tgt_box.center
    d_ab = math.hypot(xb - xa, yb - ya)
    r_max = settings.rho_r * d_ab
    pred = correct = None
    if logits is not None:
        logits = [float(v) for v in logits]
        if all(math.isfinite(v) for v in logits):
            pred = RELATIONS[int(np.argmax(logits))]
            correct = pred == sample.relation
    return SampleFacts(**sample.summary(), true_angle=sample.angle, d_ab=d_ab, r_max=r_max,
                       sigma=settings.sigma_r * r_max, logits=logits, pred=pred, correct=correct)


def score_map(sample: Sample, rmap: RelevanceMap, settings: ScoringSettings, *, source: str,
              rng: np.random.Generator | None = None) -> tuple[SourceRow, Compass]:
    """One relevance map scored against the sample's truth: the compass (Eq. 4-5), DAE (Eq. 6)
    of the evidence direction and of the sector centre, EA (Eq. 7)."""
    ref_box = rmap.ref_box or sample.ref_box
    compass = project_to_compass(rmap.values, ref_box, sample.tgt_box, sample.image_size, k=settings.k,
                                 sigma_r=settings.sigma_r, rho_r=settings.rho_r, cell_xy=rmap.cell_xy, rng=rng)
    defined = "zero_distance" not in compass.flags and "no_signal" not in compass.flags  # no truth, or no evidence
    dae = float(direction_alignment_error(compass.peak_angle, sample.angle)) if defined else None
    dae_s = float(direction_alignment_error(compass.sector_angle, sample.angle)) if defined else None
    dae_nr = dae_without_reference(sample, rmap, settings, ref_box, rng) if defined else None
    row = SourceRow(
        sample_id=sample.id, source=source, compass=[float(p) for p in compass.probs],
        peak_sector=compass.peak_sector, peak_angle=compass.peak_angle, sector_angle=compass.sector_angle,
        dae=dae, dae_sector=dae_s, ea=bool(edge_hit(dae)) if dae is not None else None, dae_no_ref=dae_nr,
        flags=[*compass.flags, *getattr(rmap, "flags", ())], extra=dict(getattr(rmap, "extra", None) or {}),
    )
    return row, compass


def stored_map(rmap: RelevanceMap, compass: Compass):
    """A source's map as the run stores it (values and cell centres as float32 NumPy arrays)."""

    cell = rmap.cell_xy
    return StoredMap(values=rmap.values.detach().float().cpu().numpy(),
                     cell_xy=None if cell is None else cell.detach().float().cpu().numpy(), r_max=float(compass.r_max),
                     ref_box=None if rmap.ref_box is None else (rmap.ref_box.x0, rmap.ref_box.y0, rmap.ref_box.x1, rmap.ref_box.y1))
def reference_cells(cell_xy: torch.Tensor, sample: Sample) -> torch.Tensor:
    """``(h, w, 2)`` cell centres -> ``(h, w)`` bool: A's own cells -- those whose footprint (the centre
    +- half the spacing to the neighbouring centres) overlaps A's box and not B's. A grid of one row
    (a multi-grid union) has no spacing to go by: its cells count by their centre alone."""
    h, w = cell_xy.shape[:2]
    hx = float((cell_xy[:, 1:, 0] - cell_xy[:, :-1, 0]).abs().median()) / 2 if w > 1 and h > 1 else 0.0
    hy = float((cell_xy[1:, :, 1] - cell_xy[:-1, :, 1]).abs().median()) / 2 if w > 1 and h > 1 else 0.0
    x, y = cell_xy[..., 0], cell_xy[..., 1]

    def on(b) -> torch.Tensor:
        if hx == 0.0:  # no spacing: the centre must lie in the box
            return (x >= b.x0) & (x <= b.x1) & (y >= b.y0) & (y <= b.y1)
        return (x - hx < b.x1) & (x + hx > b.x0) & (y - hy < b.y1) & (y + hy > b.y0)

    return on(sample.ref_box) & ~on(sample.tgt_box)


def dae_without_reference(sample: Sample, rmap: RelevanceMap, settings: ScoringSettings, ref_box,
                          rng: np.random.Generator | None = None) -> float:
    """Eq. 6 of the map with A's own cells left out (our extension, docs/paper-to-code.md): the cells
    on A (:func:`reference_cells`) get no relevance, then the same projection (around ``ref_box``)
    and DAE. A map with no mass left gets the projection's uniform compass (a seeded peak)."""
    values = torch.as_tensor(rmap.values)
    xy = (rmap.cell_xy if rmap.cell_xy is not None else uniform_cell_xy(tuple(values.shape), sample.image_size))
    xy = torch.as_tensor(xy).to(torch.float64)
    kept = torch.where(reference_cells(xy, sample).to(values.device), torch.zeros_like(values), values)
    compass = project_to_compass(kept, ref_box, sample.tgt_box, sample.image_size, k=settings.k,
                                 sigma_r=settings.sigma_r, rho_r=settings.rho_r, cell_xy=xy, rng=rng)
    return float(direction_alignment_error(compass.peak_angle, sample.angle))


def check_map(rmap: Any, plugin: str) -> None:
    """A source's map must be a RelevanceMap with a 2-D ``values`` grid and a matching ``cell_xy``."""
    if not isinstance(rmap, RelevanceMap):
        raise PluginOutputError(plugin, f"returned a {type(rmap).__name__}, not a RelevanceMap")
    v = rmap.values
    if not isinstance(v, torch.Tensor) or v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
        shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise PluginOutputError(plugin, f"returned relevance of shape {shape}; expected a non-empty 2-D (h, w) grid")
    if rmap.cell_xy is not None and tuple(rmap.cell_xy.shape) != (*v.shape, 2):
        raise PluginOutputError(plugin, f"returned cell_xy of shape {tuple(rmap.cell_xy.shape)} for relevance of shape "
                                        f"{tuple(v.shape)}; expected {(*v.shape, 2)}")


def explain_batch(batch: Sequence[Sample], sources: Sequence[Any], adapter, settings: ScoringSettings, *,
                  seed: int = 0, adapter_name: str = "adapter", keep_maps: bool = False) -> BatchResult:
    """Score a batch with every source (one shared forward pass); ``keep_maps``: also return each
    scored sample's relevance maps (:class:`creg.store.StoredMap`, on the CPU).

    Raises :class:`PluginError` (or the image's error) when the batch as a whole fails; errors
    that concern single samples (their logits, their map) are returned in ``errors`` and those
    samples are left out of ``scored``.
    """
    batch = list(batch)
    who = f"adapter {adapter_name!r}"
    result = BatchResult()
    ctx = ExplainContext.for_sources(batch, adapter, sources, seed=seed)
    failed: dict[int, SampleError] = {}
    logits = None
    if adapter is not None:
        with blame(who):
            raw = ctx.output.class_logits
        if tuple(raw.shape) != (len(batch), len(RELATIONS)):
            raise PluginOutputError(who, f"returned class logits of shape {tuple(raw.shape)} for {len(batch)} samples; "
                                         f"expected ({len(batch)}, {len(RELATIONS)})")
        logits = raw.detach().float().cpu().numpy()
        for i, row in enumerate(logits):
            if not np.isfinite(row).all():
                err = PluginOutputError(who, f"non-finite class logits {row.tolist()} for sample {batch[i].id!r} "
                                             "(a float16/bfloat16 overflow? try --dtype float32)")
                failed[i] = SampleError(batch[i].id, who, err)
    effects = None
    if adapter is not None and getattr(adapter, "provides_causal_effects", False):
        with blame(f"{who} (causal effects)"):
            effects = adapter.causal_effects(batch)
    rows: list[list[SourceRow]] = [[] for _ in batch]
    cos_queries: list[tuple[int, int, CosQuery]] = []  # (sample, source position, query)
    for j, src in enumerate(sources):
        name = f"source {src.name!r}"
        with blame(name):
            maps = src.explain(ctx)
        maps = list(maps) if maps is not None else []
        if len(maps) != len(batch):
            raise PluginOutputError(name, f"returned {len(maps)} relevance maps for {len(batch)} samples")
        for i, (sample, rmap) in enumerate(zip(batch, maps)):
            if i in failed:
                continue
            try:
                check_map(rmap, name)
                with blame(name):
                    row, compass = score_map(sample, rmap, settings, source=src.name, rng=ctx.rng(i, f"tie/{src.name}"))
            except PluginError as e:
                failed[i] = SampleError(sample.id, name, e, short_traceback(e))
                continue
            if effects is not None:
                row.ground_truth = ground_truth_scores(rmap.values, effects[i], ctx.layout(i).in_image)
            rows[i].append(row)
            result.compasses[(sample.id, src.name)] = compass
            if keep_maps:
                result.maps.setdefault(sample.id, {})[src.name] = stored_map(rmap, compass)
                if adapter is not None:
                    result.layouts[sample.id] = ctx.layout(i)
            ref_box = rmap.ref_box or sample.ref_box
            cos_queries.append((i, j, CosQuery(i, compass.peak_sector, ref_box.center, compass.r_max)))
    cos_true: dict[int, Any] = {}
    cos_queries = [q for q in cos_queries if q[0] not in failed]
    if settings.cos and adapter is not None and cos_queries:
        cell_xy = [ctx.layout(i).cell_xy for i in range(len(batch))]
        # the sources are done: free the graph, saved activations and gradients before the occluded passes
        raw = maps = None  # noqa: F841 - the logits hold the autograd graph
        ctx.release()
        with blame(f"{who} (causal occlusion)"):
            entries = causal_occlusion(adapter, batch, [q for _, _, q in cos_queries], k=settings.k, rho_r=settings.rho_r,
                                       op=settings.cos_op, cell_xy=cell_xy,  # p_0 from the pass already run:
                                       log_p0=gt_log_probs(torch.from_numpy(logits), [s.option for s in batch]))
        by_sample_source = {(i, j): e for (i, j, _), e in zip(cos_queries, entries)}
        for (i, j), entry in by_sample_source.items():
            if entry is None:
                continue
            entry = dict(entry)
            true = entry.pop("true", None)
            if true is not None:
                cos_true.setdefault(i, true)
            source_name = sources[j].name
            for row in rows[i]:
                if row.source == source_name:
                    row.cos = entry
    for i, sample in enumerate(batch):
        if i in failed:
            result.errors.append(failed[i])
            continue
        facts = sample_facts(sample, settings, None if logits is None else logits[i])
        if i in cos_true:
            facts.cos_true = cos_true[i]
        result.scored.append((facts, rows[i]))
    result.maps = {sid: m for sid, m in result.maps.items() if sid not in {batch[i].id for i in failed}}
    return result
