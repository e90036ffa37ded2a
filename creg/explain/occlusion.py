"""Causal Occlusion Score (paper §4, Eq. 8): does hiding the attributed direction hurt the answer?

A *wedge* is the part of the image that the compass projection assigns to sector ``s``: the
pixels whose centre (x + 0.5, y + 0.5), seen from the projection centre (x_A, y_A) (Eq. 4),
has angle theta in sector ``s`` (centre s * 360 / K, width 360 / K, half-open as in
:func:`creg.core.compass.sector_of`) and distance 0 < rho <= r_max, with the same r_max = rho_r * d_AB
as the projection (Eq. 5); a point exactly at the centre has no direction and is in no wedge. Occluding sector ``s`` changes only that wedge; then

    Delta S_s = log p_s(gt) - log p_0(gt),   COS = Delta S_opp - Delta S_true        (Eq. 8)

with p = softmax over the four class logits, p_0 the unoccluded image and ``opp`` the sector
opposite ``true``. The paper's text reads the occluded sector both as "the CREG-indicated
direction" and as "the true direction"; both readings are computed and labelled:

* ``peak``: the source's peak sector vs. its opposite -- is the *attributed* direction causally
  relevant? (differs per source)
* ``true``: the sector containing theta_true vs. its opposite -- does the *model* rely on the
  region towards B? (the same for every source of a sample: it does not depend on the attribution)
* ``adjacent`` (control beyond the paper, §6.5): the two sectors next to the peak;
  ``cos = mean Delta S_adj - Delta S_peak`` > 0 when the peak itself matters more than its
  neighbours.
* ``area_matched`` (control beyond the paper, issue 12): the paper's COS compares two wedges
  clipped by the image border, so they can differ a lot in size (on creg 0.1's synthetic
  scenes the peak wedge of noise relevance covered 0.20-0.25 of the image, its opposite
  0.04-0.05): hiding more pixels hurts more whatever the direction. The control hides the
  *same number of pixels* in the shape of the same kind of wedge, rotated to another sector
  (:func:`area_matched_mask`: the pixels of sector s' nearest to the centre, as many as the
  peak wedge has; s' drawn uniformly from the other sectors that are large enough, seeded by
  the sample id and the peak sector, so every source with the same peak shares the control).
  ``cos = Delta S_ctrl - Delta S_peak`` > 0 when hiding the attributed direction hurts more than
  hiding as much of the image in a direction drawn at random.

Every occlusion records the occluded fraction of the image (``area``, ``area_opp``,
``adjacent.areas``, ``area_matched.area``), so the area confound can be read off any record.

Operators (what "occlude" means; §6.5 asks for more than grey fill):

* ``grey``: wedge pixels set to mid-grey :data:`GREY` (the paper's operator, the default).
* ``blur``: wedge pixels replaced by a Gaussian blur of the image (PIL ``GaussianBlur`` with
  radius :data:`BLUR_RADIUS_FRAC` x the longer image side): removes detail, keeps colour mass.
* ``patch_drop``: every vision-grid cell whose *centre* (the model's ``cell_xy``) lies in the
  wedge is filled with grey over its whole footprint -- the rectangle of pixels closer to that
  cell's centre than to its neighbours' along each axis (boundaries half-way between adjacent
  cell centres, the image border outside). The model sees whole tokens hidden, none partly.

p_0 comes from the explained pass itself when the caller has it (``log_p0``: ``creg run --cos``
passes the class logits of the forward its sources already ran), otherwise from the same no-grad
forward call as the occluded images (one call per sample). A wedge that covers no pixel (it points out of the image)
gets Delta S = 0 exactly, without a forward pass; its ``area`` in the record is 0.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter

from creg.core.compass import polar_coordinates, sector_centers, sector_of
from creg.core.measures import bootstrap_ci
from creg.core.sample import Sample
from creg.plugins.adapter import ForwardRequest, OccludedImage

Operator = Literal["grey", "blur", "patch_drop"]
OPERATORS: tuple[str, ...] = ("grey", "blur", "patch_drop")

#: The fill colour of ``grey`` and ``patch_drop`` (RGB).
GREY: tuple[int, int, int] = (128, 128, 128)
#: ``blur``'s Gaussian radius as a fraction of the longer image side (224 px -> 11.2 px).
BLUR_RADIUS_FRAC = 0.05


# -- geometry: which pixels belong to a sector ------------------------------------------------

def pixel_polar(image_size: tuple[int, int], center: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(theta, rho), each ``(H, W)``, of every pixel centre (x + 0.5, y + 0.5) seen from ``center`` (Eq. 4)."""
    w, h = image_size
    xs = torch.arange(w, dtype=torch.float64) + 0.5
    ys = torch.arange(h, dtype=torch.float64) + 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return polar_coordinates(torch.stack([xx, yy], dim=-1), center)


@lru_cache(maxsize=32)
def _pixel_sectors(image_size: tuple[int, int], center: tuple[float, float], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(sector, rho), each ``(H, W)`` and read-only, of every pixel centre seen from ``center``
    (cached: the wedges and controls of one sample share it)."""
    theta, rho = pixel_polar(image_size, center)
    sector, rho = sector_of(theta, k).numpy(), rho.numpy()
    sector.flags.writeable = rho.flags.writeable = False
    return sector, rho


def sector_masks(image_size: tuple[int, int], center: tuple[float, float], r_max: float, k: int) -> np.ndarray:
    """``(K, H, W)`` bool: mask ``s`` is the wedge of sector ``s`` out to ``r_max`` around ``center``."""
    sector, rho = _pixel_sectors(tuple(image_size), tuple(center), k)
    inside = _in_radius(rho, r_max)
    return (sector[None] == np.arange(k)[:, None, None]) & inside[None]


def wedge_mask(image_size: tuple[int, int], center: tuple[float, float], r_max: float, sector: int, k: int) -> np.ndarray:
    """``(H, W)`` bool: the pixels of sector ``sector`` within ``r_max`` of ``center``."""
    sectors, rho = _pixel_sectors(tuple(image_size), tuple(center), k)
    return (sectors == sector) & _in_radius(rho, r_max)


def _in_radius(rho, r_max: float):
    """0 < rho <= r_max: a point at the centre itself has no direction and belongs to no wedge."""
    return (rho > 1e-9) & (rho <= r_max)


def opposite_sector(sector: int, k: int) -> int:
    """The sector containing the direction opposite sector ``sector``'s centre ((s + K/2) mod K for even K)."""
    c = float(sector_centers(k)[sector]) + 180.0
    return int(sector_of(torch.tensor([c], dtype=torch.float64), k)[0])


def adjacent_sectors(sector: int, k: int) -> tuple[int, int]:
    """The counter-clockwise and clockwise neighbours of ``sector``."""
    return (sector + 1) % k, (sector - 1) % k


def true_sector(true_angle: float, k: int) -> int:
    """The sector containing theta_true."""
    return int(sector_of(torch.tensor([true_angle], dtype=torch.float64), k)[0])


def cell_footprints(cell_xy: torch.Tensor | np.ndarray, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """For an axis-aligned ``(gh, gw, 2)`` grid: the cell row of every pixel row ``(H,)`` and the
    cell column of every pixel column ``(W,)``. Boundaries lie half-way between adjacent cell
    centres; pixels beyond the first/last centre belong to the first/last cell."""
    xy = np.asarray(cell_xy, dtype=np.float64)
    w, h = image_size
    cx, cy = xy[0, :, 0], xy[:, 0, 1]
    bx, by = (cx[1:] + cx[:-1]) / 2.0, (cy[1:] + cy[:-1]) / 2.0
    cols = np.searchsorted(bx, np.arange(w) + 0.5, side="right")
    rows = np.searchsorted(by, np.arange(h) + 0.5, side="right")
    return rows, cols


def patch_drop_mask(cell_xy, image_size: tuple[int, int], center: tuple[float, float], r_max: float,
                    sector: int, k: int) -> np.ndarray:
    """``(H, W)`` bool: the footprints of the grid cells whose centre lies in the wedge (``patch_drop``)."""
    xy = torch.as_tensor(cell_xy, dtype=torch.float64)
    theta, rho = polar_coordinates(xy, center)
    cells = ((sector_of(theta, k) == sector) & _in_radius(rho, r_max)).numpy()  # gh gw
    rows, cols = cell_footprints(xy, image_size)
    return cells[rows[:, None], cols[None, :]]


def _nearest_first(member: np.ndarray, rho: np.ndarray, count: int) -> np.ndarray:
    """Bool mask of the ``count`` members with the smallest ``rho`` (ties: raster order)."""
    idx = np.flatnonzero(member.ravel())
    keep = idx[np.argsort(rho.ravel()[idx], kind="stable")[:count]]
    out = np.zeros(member.size, dtype=bool)
    out[keep] = True
    return out.reshape(member.shape)


def area_matched_mask(op: Operator, image_size: tuple[int, int], center: tuple[float, float], like: np.ndarray,
                      avoid_sector: int, k: int, rng: np.random.Generator, cell_xy=None) -> tuple[np.ndarray, int]:
    """An occlusion the size of ``like`` (an ``(H, W)`` bool mask) in the shape of a wedge of
    another sector: ``(mask, sector)``.

    The sector is drawn uniformly from the sectors other than ``avoid_sector`` that hold enough
    pixels (for ``patch_drop``: enough grid cells) in the whole image; the mask is that sector's
    pixels (cells) nearest to ``center``, exactly as many as ``like`` has. If no other sector is
    large enough (``like`` is a wedge towards the open image from a point near a corner), the
    largest one is taken whole and topped up from its neighbours, nearest-first, alternating
    sides: the count still matches.
    """
    others = [s for s in range(k) if s != avoid_sector]
    if op == "patch_drop":
        if cell_xy is None:
            raise ValueError("patch_drop needs the model's vision grid (cell_xy)")
        xy = torch.as_tensor(cell_xy, dtype=torch.float64)
        theta, rho = polar_coordinates(xy, center)
        rows, cols = cell_footprints(xy, image_size)
        # ``like`` is a union of cell footprints: read each cell at its footprint's first pixel
        first_row = np.searchsorted(rows, np.arange(xy.shape[0]))
        first_col = np.searchsorted(cols, np.arange(xy.shape[1]))
        count = int(like[np.minimum(first_row, len(rows) - 1)[:, None], np.minimum(first_col, len(cols) - 1)[None, :]].sum())
        sector, rho = sector_of(theta, k).numpy(), rho.numpy()
    else:
        sector, rho = _pixel_sectors(tuple(image_size), tuple(center), k)
        count = int(like.sum())
    has_dir = rho > 1e-9
    capacity = {s: int(((sector == s) & has_dir).sum()) for s in others}
    fits = [s for s in others if capacity[s] >= count]
    chosen = int(rng.choice(fits)) if fits else max(others, key=lambda s: capacity[s])
    # the chosen sector nearest-first; if it is too small (a wedge clipped by the border), its
    # neighbours on either side in turn, so that the pixel count always matches
    picked = np.zeros(sector.shape, dtype=bool)
    order = [chosen] + [(chosen + sign * step) % k for step in range(1, k) for sign in (1, -1)]
    for s in dict.fromkeys(order):
        need = count - int(picked.sum())
        if need <= 0:
            break
        if s != avoid_sector:
            picked |= _nearest_first((sector == s) & has_dir, rho, need)
    if op == "patch_drop":
        picked = picked[rows[:, None], cols[None, :]]
    return picked, chosen


def control_rng(sample_id: str, peak_sector: int) -> np.random.Generator:
    """The area-matched control's generator: a function of the sample and the peak sector only
    (not of the source, the run's other sources or the batch)."""
    return np.random.default_rng([zlib.crc32(sample_id.encode()), peak_sector])


# -- operators: what occluding a mask does to the image ---------------------------------------

def operator_fill(image: Image.Image, op: Operator = "grey") -> np.ndarray:
    """``(H, W, 3)`` uint8: what ``op`` puts in place of occluded pixels of ``image`` (read-only)."""
    if op in ("grey", "patch_drop"):
        w, h = image.size
        return np.broadcast_to(np.array(GREY, dtype=np.uint8), (h, w, 3))
    if op == "blur":
        radius = BLUR_RADIUS_FRAC * max(image.size)
        return np.asarray(image.convert("RGB").filter(ImageFilter.GaussianBlur(radius)))
    raise ValueError(f"unknown occlusion operator {op!r}; choose one of {', '.join(OPERATORS)}")


def apply_operator(image: Image.Image, mask: np.ndarray, op: Operator = "grey") -> Image.Image:
    """A copy of ``image`` with the ``mask`` pixels occluded by ``op`` (``patch_drop`` fills grey:
    its difference from ``grey`` lies in the mask, see :func:`patch_drop_mask`)."""
    fill = operator_fill(image, op)
    return OccludedImage(base=np.asarray(image.convert("RGB")), fill=fill, mask=np.asarray(mask, dtype=bool)).render()


def occlusion_mask(op: Operator, image_size: tuple[int, int], center: tuple[float, float], r_max: float,
                   sector: int, k: int, cell_xy=None) -> np.ndarray:
    """The pixels that ``op`` changes when occluding ``sector``."""
    if op == "patch_drop":
        if cell_xy is None:
            raise ValueError("patch_drop needs the model's vision grid (cell_xy)")
        return patch_drop_mask(cell_xy, image_size, center, r_max, sector, k)
    return wedge_mask(image_size, center, r_max, sector, k)


def occlude_sector(image: Image.Image, center: tuple[float, float], r_max: float, sector: int, k: int,
                   op: Operator = "grey", cell_xy=None) -> Image.Image:
    """``image`` with sector ``sector`` (out to ``r_max`` around ``center``) occluded by ``op``."""
    return apply_operator(image, occlusion_mask(op, image.size, center, r_max, sector, k, cell_xy), op)


# -- Eq. 8 ------------------------------------------------------------------------------------

def delta_s(log_p_occluded, log_p0) -> np.ndarray:
    """Eq. 8: Delta S_k = log p_k(gt) - log p_0(gt) (vectorised)."""
    return np.asarray(log_p_occluded, dtype=np.float64) - np.asarray(log_p0, dtype=np.float64)


def causal_occlusion_score(delta_true, delta_opp) -> np.ndarray:
    """Eq. 8: COS = Delta S_opp - Delta S_true (> 0 when hiding the indicated sector hurts more)."""
    return np.asarray(delta_opp, dtype=np.float64) - np.asarray(delta_true, dtype=np.float64)


@dataclass(frozen=True)
class CosQuery:
    """One (sample, source) to score: the source's peak sector and its compass's centre and r_max."""

    index: int  # the sample's position in the batch
    peak_sector: int
    center: tuple[float, float]  # the projection centre (A's centre, or a control's own reference)
    r_max: float  # the compass's r_max = rho_r * d_AB; 0 when d_AB = 0 (no COS)


def gt_log_probs(class_logits: torch.Tensor, options: Sequence[int]) -> np.ndarray:
    """``(n,)`` log softmax over the four class logits, at each row's ground-truth option."""
    logp = torch.log_softmax(class_logits.detach().double(), dim=-1)
    return logp[torch.arange(logp.shape[0]), torch.as_tensor(list(options))].cpu().numpy()


def occluded_class_logits(adapter, samples: Sequence[Sample], images: Sequence[OccludedImage]) -> torch.Tensor:
    """``(n, 4)`` class logits of the occluded images: the adapter's
    :meth:`~creg.plugins.adapter.VLMAdapter.occluded_class_logits`, or for an object that only has
    ``forward`` (creg 0.1 adapters, test doubles) its forward on the rendered images."""
    method = getattr(adapter, "occluded_class_logits", None)
    if method is not None:
        return method(samples, images)

    with torch.inference_mode():
        return adapter.forward(samples, ForwardRequest(), images=[im.render() for im in images]).class_logits


def causal_occlusion(
    adapter,
    samples: Sequence[Sample],
    queries: Sequence[CosQuery],
    *,
    k: int,
    rho_r: float,
    op: Operator = "grey",
    cell_xy: Sequence[Any] | None = None,
    chunk_size: int | None = None,
    log_p0: Sequence[float] | None = None,
) -> list[dict[str, Any] | None]:
    """The ``cos`` entry of each query's record (None where d_AB = 0).

    Every distinct occlusion of the batch (by sample, centre, r_max and sector, and one
    area-matched control per sample and peak sector) is made once and shared by all queries
    that need it; a wedge that covers no pixel needs no forward pass. Each sample's occluded
    images (at most 2K) go to the model together with its unoccluded image (for p_0), in one
    forward call per sample -- memory does not grow with the batch -- or in calls of at most
    ``chunk_size`` images (default ``max(len(samples), 2K + 1)``, i.e. one call per sample; a
    smaller one splits a sample's stack, p_0 riding with the first part), through
    :meth:`creg.plugins.adapter.VLMAdapter.occluded_class_logits` (no gradients).
    ``cell_xy``: per sample, the model's ``(gh, gw, 2)`` cell centres (needed for ``patch_drop``).
    ``log_p0``: per sample, log p_0(gt) from a forward already run on the unoccluded image (the
    explained pass: :func:`creg.explain.pipeline.explain_batch`); then no unoccluded image is sent.
    """
    if op not in OPERATORS:
        raise ValueError(f"unknown occlusion operator {op!r}; choose one of {', '.join(OPERATORS)}")
    WedgeKey = tuple  # (sample index, centre, r_max, sector) or ("area_matched", sample index, centre, r_max, peak)
    plans: list[dict[str, Any] | None] = []
    wanted: dict[WedgeKey, None] = {}
    for q in queries:
        s = samples[q.index]
        xa, ya = s.ref_box.center
        xb, yb = s.tgt_box.center
        r_true = rho_r * math.hypot(xb - xa, yb - ya)
        if not (q.r_max > 0 and r_true > 0):
            plans.append(None)
            continue
        t = true_sector(s.angle, k)
        plan = {
            "peak": [(q.index, q.center, q.r_max, q.peak_sector), (q.index, q.center, q.r_max, opposite_sector(q.peak_sector, k))],
            "true": [(q.index, (xa, ya), r_true, t), (q.index, (xa, ya), r_true, opposite_sector(t, k))],
            "adjacent": [(q.index, q.center, q.r_max, a) for a in adjacent_sectors(q.peak_sector, k)],
        }
        for keys in plan.values():
            wanted.update(dict.fromkeys(keys))
        plan["area_matched"] = [("area_matched", q.index, q.center, q.r_max, q.peak_sector)]
        wanted.update(dict.fromkeys(plan["area_matched"]))
        plans.append(plan)
    if not any(p is not None for p in plans):
        return [None] * len(queries)

    # the masks: every distinct wedge once, then the controls (they match a wedge's size)
    needed = sorted({key[1] if key[0] == "area_matched" else key[0] for key in wanted})
    images = {i: samples[i].load_image() for i in needed}
    area: dict[WedgeKey, float] = {}
    control_sector: dict[WedgeKey, int] = {}
    masks: dict[WedgeKey, np.ndarray] = {}
    for key in sorted(wanted, key=lambda key: key[0] == "area_matched"):
        if key[0] == "area_matched":
            _, i, center, r_max, peak = key
            xy = cell_xy[i] if cell_xy is not None else None
            like = masks[(i, center, r_max, peak)]
            mask, control_sector[key] = area_matched_mask(op, images[i].size, center, like, peak, k,
                                                          control_rng(samples[i].id, peak), xy)
        else:
            i, center, r_max, sector = key
            xy = cell_xy[i] if cell_xy is not None else None
            mask = occlusion_mask(op, images[i].size, center, r_max, sector, k, xy)
        masks[key] = mask
        area[key] = float(mask.mean())

    # per sample: its unoccluded image (p_0), then every non-empty occlusion (one call unless chunk_size splits it)
    logp_of: dict[WedgeKey, float] = {}
    logp0: dict[int, float] = {i: float(log_p0[i]) for i in needed} if log_p0 is not None else {}
    limit = chunk_size or max(len(samples), 2 * k + 1)
    for i in needed:
        base = np.asarray(images[i].convert("RGB"))
        fill = operator_fill(images[i], op)
        keys = [key for key in masks if (key[1] if key[0] == "area_matched" else key[0]) == i and masks[key].any()]
        stack: list[WedgeKey | None] = [*([] if i in logp0 else [None]), *keys]  # None: the unoccluded image
        empty = np.zeros(base.shape[:2], dtype=bool)
        for start in range(0, len(stack), limit):
            part = stack[start:start + limit]
            occluded = [OccludedImage(base=base, fill=fill, mask=empty if key is None else masks[key]) for key in part]
            logits = occluded_class_logits(adapter, [samples[i]] * len(part), occluded)
            for key, value in zip(part, gt_log_probs(logits, [samples[i].option] * len(part))):
                if key is None:
                    logp0[i] = float(value)
                else:
                    logp_of[key] = float(value)

    def delta(key: WedgeKey) -> float:
        i = key[1] if key[0] == "area_matched" else key[0]
        return float(delta_s(logp_of[key], logp0[i])) if key in logp_of else 0.0

    results: list[dict[str, Any] | None] = []
    for q, plan in zip(queries, plans):
        if plan is None:
            results.append(None)
            continue
        entry: dict[str, Any] = {"op": op, "log_p0": logp0[q.index]}
        for reading in ("peak", "true"):
            sec, opp = plan[reading]
            d, d_opp = delta(sec), delta(opp)
            entry[reading] = {
                "sector": sec[3], "opp_sector": opp[3], "delta": d, "delta_opp": d_opp,
                "cos": float(causal_occlusion_score(d, d_opp)), "area": area[sec], "area_opp": area[opp],
            }
        adj = [delta(a) for a in plan["adjacent"]]
        entry["adjacent"] = {
            "sectors": [a[3] for a in plan["adjacent"]], "delta": adj, "delta_mean": float(np.mean(adj)),
            "cos": float(np.mean(adj) - entry["peak"]["delta"]), "areas": [area[a] for a in plan["adjacent"]],
        }
        (ctrl,) = plan["area_matched"]
        d_ctrl = delta(ctrl)
        entry["area_matched"] = {
            "sector": control_sector[ctrl], "delta": d_ctrl, "area": area[ctrl], "area_peak": entry["peak"]["area"],
            "cos": float(causal_occlusion_score(entry["peak"]["delta"], d_ctrl)),
        }
        results.append(entry)
    return results


# -- summary ----------------------------------------------------------------------------------

def _stat(values: list[float], seed: int) -> dict[str, Any]:
    x = np.asarray(values, dtype=np.float64)
    return {"mean": float(x.mean()) if x.size else None, "ci": bootstrap_ci(x, seed=seed)}


def summarize_cos(entries: Sequence[dict[str, Any] | None], seed: int = 0) -> dict[str, Any] | None:
    """Means and 95% bootstrap CIs of Delta S and COS for both readings, the adjacent and the
    area-matched controls, and of the occluded fractions of the image (``area``), over the
    records that have a ``cos`` entry (None if none has)."""
    rows = [e for e in entries if e]
    if not rows:
        return None
    out: dict[str, Any] = {"n": len(rows), "op": rows[0]["op"]}
    for reading in ("peak", "true"):
        out[reading] = {
            name: _stat([r[reading][name] for r in rows], seed) for name in ("delta", "delta_opp", "cos")
        }
        for name in ("area", "area_opp"):  # the occluded fractions of the image (older records: absent)
            if all(name in r[reading] for r in rows):
                out[reading][name] = _stat([r[reading][name] for r in rows], seed)
    out["adjacent"] = {
        "delta": _stat([r["adjacent"]["delta_mean"] for r in rows], seed),
        "cos": _stat([r["adjacent"]["cos"] for r in rows], seed),
    }
    matched = [r["area_matched"] for r in rows if r.get("area_matched")]
    if len(matched) == len(rows):  # runs scored before the control existed have none
        out["area_matched"] = {name: _stat([m[name] for m in matched], seed) for name in ("delta", "cos", "area")}
    return out
