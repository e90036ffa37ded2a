"""creg's own metrics, registered through the ``creg_metrics`` entry point like any plugin's.

* ``dae`` -- Direction Alignment Error (Eq. 6) of the evidence direction ``peak_angle`` (deg, lower is better).
* ``ea`` -- Edge Accuracy (Eq. 7): share of records with DAE <= 45 deg.
* ``dae_sector`` -- Eq. 6 with the centre of the peak sector (the paper's literal theta_peak).
* ``dae_no_ref`` / ``ea_no_ref`` -- Eq. 6 / 7 with A's own cells left out of the map (our extension,
  docs/paper-to-code.md).
* ``causal_mass`` / ``causal_rank`` -- the map against the adapter's exact causal effects, where the
  adapter provides them (:mod:`creg.core.ground_truth`; absent otherwise).
* ``cos_peak`` -- Causal Occlusion Score (Eq. 8) of the source's peak sector (``creg run --cos``).
* ``cos_area_matched`` -- the same occlusion read against the area-matched control (as many pixels
  hidden in another sector, :func:`creg.explain.occlusion.area_matched_mask`) instead of the opposite
  sector, whose clipped wedge can be much smaller (``creg run --cos``; records scored before the
  control existed: NaN).

Each ``compute`` maps records (:class:`creg.core.records.SampleRecord`) to ``(n,)`` float64, NaN where
undefined (d_AB = 0: no direction; no occlusion entry).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

import creg
from creg.core.measures import edge_hit, random_peak_expectation


def _field(records: Sequence, name: str) -> np.ndarray:
    return np.array([np.nan if getattr(r, name) is None else getattr(r, name) for r in records], dtype=np.float64)


def dae(records: Sequence) -> np.ndarray:
    return _field(records, "dae")


def dae_sector(records: Sequence) -> np.ndarray:
    return _field(records, "dae_sector")


def dae_no_ref(records: Sequence) -> np.ndarray:
    return _field(records, "dae_no_ref")


def _edge_accuracy(d: np.ndarray) -> np.ndarray:
    """Eq. 7 per record from its DAE (NaN where there is none)."""
    return np.where(np.isnan(d), np.nan, edge_hit(np.nan_to_num(d)).astype(np.float64))


def ea_no_ref(records: Sequence) -> np.ndarray:
    return _edge_accuracy(dae_no_ref(records))


def _ground_truth(records: Sequence, key: str) -> np.ndarray:
    out = [(getattr(r, "ground_truth", None) or {}).get(key) for r in records]
    return np.array([np.nan if v is None else v for v in out], dtype=np.float64)


def causal_mass(records: Sequence) -> np.ndarray:
    return _ground_truth(records, "causal_mass")


def causal_rank(records: Sequence) -> np.ndarray:
    return _ground_truth(records, "causal_rank")


def ea(records: Sequence) -> np.ndarray:
    return _edge_accuracy(dae(records))


def _cos_reading(records: Sequence, reading: str) -> np.ndarray:
    out = []
    for r in records:
        v = ((r.cos or {}).get(reading) or {}).get("cos")
        out.append(np.nan if v is None else v)
    return np.array(out, dtype=np.float64)


def cos_peak(records: Sequence) -> np.ndarray:
    return _cos_reading(records, "peak")


def cos_area_matched(records: Sequence) -> np.ndarray:
    return _cos_reading(records, "area_matched")


@creg.hookimpl
def register_metrics(register):
    register("dae", dae, higher_is_better=False, label="DAE", digits=1, ci_digits=0, table="always",
             description="Direction Alignment Error (Eq. 6), deg", chance=lambda k: random_peak_expectation(k)[0])
    register("ea", ea, higher_is_better=True, label="EA", digits=3, ci_digits=2, table="always",
             description="Edge Accuracy (Eq. 7): share with DAE <= 45 deg", chance=lambda k: random_peak_expectation(k)[1])
    register("dae_sector", dae_sector, higher_is_better=False, label="DAE (sector centre)", digits=1, table="always",
             table_ci=False, breakdown=False, paired=False,
             description="Eq. 6 with the centre of the peak sector (the paper's literal theta_peak), deg")
    register("cos_peak", cos_peak, higher_is_better=True, label="COS{arrow} peak", digits=3, ci_digits=3, signed=True,
             breakdown=False, description="Causal Occlusion Score (Eq. 8) of the peak sector (--cos)")
    register("cos_area_matched", cos_area_matched, higher_is_better=True, label="COS{arrow} area-matched", digits=3,
             ci_digits=3, signed=True, breakdown=False,
             description="COS of the peak sector against the area-matched control instead of its opposite (--cos)")
    register("dae_no_ref", dae_no_ref, higher_is_better=False, label="DAE (A left out)", digits=1, ci_digits=0,
             table="if_present", paired=False, breakdown=False,
             description="Eq. 6 with A's own cells left out of the map (our extension), deg")
    register("ea_no_ref", ea_no_ref, higher_is_better=True, label="EA (A left out)", digits=3, ci_digits=2,
             table="if_present", paired=False, breakdown=False,
             description="Eq. 7 of the DAE with A's own cells left out (our extension)")
    register("causal_mass", causal_mass, higher_is_better=True, label="causal mass{arrow}", digits=3, ci_digits=2,
             paired=False, breakdown=False,
             description="share of the relevance on the cells holding 95% of the exact causal effect "
                         "(adapters that provide causal effects)")
    register("causal_rank", causal_rank, higher_is_better=True, label="causal rank{arrow}", digits=3, ci_digits=2,
             signed=True, paired=False, breakdown=False,
             description="Spearman correlation of the map with |causal effect| per cell "
                         "(adapters that provide causal effects)")
