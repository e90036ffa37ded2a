"""Relevance maps stored in a run directory (``creg run --save-maps``, the default).

A run's records hold compasses, not maps; with the maps stored, ``creg report`` and ``creg gallery``
draw every source's heatmap without loading the model again. One compressed NumPy archive per
finished sample, ``maps/<sample id made safe>-<hash>.npz`` (the hash keeps two ids that differ only in
characters a file name cannot hold apart), holding for each source ``i`` (``sources[i]``):

* ``values_i``: ``(h, w)`` float32 relevance as the source returned it;
* ``cell_xy_i``: ``(h, w, 2)`` float32 pixel centres (x, y) in the original image, absent for a grid
  that tiles the image uniformly or when ``cell_from[i]`` names an earlier source with the same
  centres (the sources of one model share its grid: stored once);
* ``r_max[i]`` and ``ref_box[i]`` (``x0, y0, x1, y1``, NaN for the sample's own box A): what the
  compass was projected around.

Archives hold plain arrays only (read with ``allow_pickle=False``). A sample's archive is written
(atomically) before its lines in ``samples.jsonl`` / ``records.jsonl``, so every finished sample of a
run that saves maps has its maps, whatever interrupts the run; a resume removes archives of samples
that did not finish and writes them again when it processes them.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from creg.store.layout import safe_name

MAPS = "maps"


@dataclass
class StoredMap:
    """One source's relevance map of one sample. ``values``: ``(h, w)``; ``cell_xy``: ``(h, w, 2)``
    or None (a uniform grid); ``ref_box``: the box the compass was projected around when it is
    not the sample's box A, else None."""

    values: np.ndarray
    cell_xy: np.ndarray | None
    r_max: float
    ref_box: tuple[float, float, float, float] | None = None


def map_file_name(sample_id: str) -> str:
    """The archive's file name for ``sample_id``: its safe form (at most 80 characters) and a hash of
    the id itself."""

    digest = hashlib.sha1(sample_id.encode("utf-8")).hexdigest()[:10]
    return f"{safe_name(sample_id)[:80]}-{digest}.npz"


def encode_maps(maps: dict[str, StoredMap]) -> bytes:
    """The ``.npz`` bytes of one sample's maps (``{source: map}``, in source order)."""
    arrays: dict[str, np.ndarray] = {"sources": np.array(list(maps), dtype=str)}
    r_max, ref, cell_from = [], [], []
    for i, m in enumerate(maps.values()):
        arrays[f"values_{i}"] = np.asarray(m.values, dtype=np.float32)
        same = -1
        if m.cell_xy is not None:
            cell = np.asarray(m.cell_xy, dtype=np.float32)
            same = next((j for j in range(i) if f"cell_xy_{j}" in arrays and arrays[f"cell_xy_{j}"].shape == cell.shape
                         and np.array_equal(arrays[f"cell_xy_{j}"], cell)), -1)
            if same < 0:
                arrays[f"cell_xy_{i}"] = cell
        cell_from.append(same)
        r_max.append(float(m.r_max) if m.r_max is not None else math.nan)
        ref.append(list(m.ref_box) if m.ref_box is not None else [math.nan] * 4)
    arrays["cell_from"] = np.array(cell_from, dtype=np.int64)
    arrays["r_max"] = np.array(r_max, dtype=np.float64)
    arrays["ref_box"] = np.array(ref, dtype=np.float64).reshape(len(ref), 4)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def decode_maps(path: Path) -> dict[str, StoredMap]:
    """``{source: map}`` of one archive (ValueError / OSError when it is not a readable archive)."""
    with np.load(path, allow_pickle=False) as z:
        names = [str(s) for s in z["sources"]]
        r_max, ref = z["r_max"], z["ref_box"]
        cell_from = z["cell_from"] if "cell_from" in z.files else np.full(len(names), -1)
        out = {}
        for i, name in enumerate(names):
            j = int(cell_from[i]) if cell_from[i] >= 0 else i
            cell = z[f"cell_xy_{j}"] if f"cell_xy_{j}" in z.files else None
            box = None if np.isnan(ref[i]).any() else tuple(float(v) for v in ref[i])
            out[name] = StoredMap(values=z[f"values_{i}"], cell_xy=cell,
                                  r_max=float(r_max[i]) if math.isfinite(r_max[i]) else None, ref_box=box)
        return out
