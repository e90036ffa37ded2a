"""Direction Alignment Error (Eq. 6), Edge Accuracy (Eq. 7), accuracy and bootstrap CIs.

All functions are vectorised over samples (numpy arrays in, arrays or floats out).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

#: EA's threshold (deg): the peak lies in the correct 90-degree quadrant around the truth.
EA_THRESHOLD = 45.0
_EPS = 1e-9
#: deg: a DAE below this is round-off (float64 angles carry ~1e-13 deg of it), reported as 0.
DAE_ROUNDOFF = 1e-9


def direction_alignment_error(peak_angle, true_angle) -> np.ndarray:
    """Eq. 6: DAE = | ((theta_peak - theta_true + 180) mod 360) - 180 |, in [0, 180] deg.

    An error below :data:`DAE_ROUNDOFF` deg is floating-point round-off of two atan2 of the same
    direction (the oracle's 5.7e-15) and is returned as exactly 0, so exports show 0, not noise."""
    d = np.asarray(peak_angle, dtype=np.float64) - np.asarray(true_angle, dtype=np.float64)
    dae = np.abs(np.mod(d + 180.0, 360.0) - 180.0)
    return np.where(dae < DAE_ROUNDOFF, 0.0, dae)


def edge_hit(dae) -> np.ndarray:
    """Eq. 7's indicator 1[DAE <= 45 deg] per sample (a tolerance absorbs float round-off)."""
    return np.asarray(dae, dtype=np.float64) <= EA_THRESHOLD + _EPS


def edge_accuracy(dae) -> float:
    """Eq. 7: EA = mean of 1[DAE_i <= 45 deg]."""
    hits = edge_hit(dae)
    return float(hits.mean()) if hits.size else float("nan")


def random_peak_expectation(k: int) -> tuple[float, float]:
    """Expected (DAE, EA) when the peak sector is uniformly random and the true direction is
    uniform within its sector (paper §4, "Metric validation"): DAE = 90 deg, EA = 2/K for K = 8
    (the own sector and one neighbour lie within 45 deg), 1/4 for K = 4."""
    # Average over a fine grid of truth offsets inside one sector, exactly as the paper argues.
    width = 360.0 / k
    offsets = (np.arange(2000) + 0.5) / 2000 * width - width / 2
    centers = np.arange(k) * width
    dae = direction_alignment_error(centers[None, :], offsets[:, None])
    return float(dae.mean()), float(edge_hit(dae).mean())


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap (1 - alpha) CI of the mean (or ``statistic`` over axis 1).

    Seeded: the same values and seed give the same interval. None for an empty sample.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    boots = x[idx]
    stats = boots.mean(axis=1) if statistic is None else statistic(boots)
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def paired_bootstrap_pvalue(a, b, *, n_boot: int = 10000, seed: int = 0) -> dict[str, float]:
    """Paired bootstrap of mean(a - b) over the same samples: the difference, its 95% CI and a
    two-sided p-value: the bootstrap distribution is centred at 0 (the null hypothesis of no
    difference) and p = (1 + #{|resampled| >= |observed|}) / (n_boot + 1), so p is never 0: its
    floor 1 / (n_boot + 1) is the resolution of ``n_boot`` resamples (Davison & Hinkley 1997, Ch. 4)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("paired samples must have the same length")
    d = a - b
    if d.size == 0:
        return {"diff": float("nan"), "ci": [float("nan")] * 2, "p": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    # centre the bootstrap distribution at 0 for the null hypothesis of no difference
    centred = means - d.mean()
    extreme = int(np.count_nonzero(np.abs(centred) >= abs(d.mean()) - 1e-12))
    p = (1 + extreme) / (n_boot + 1)
    return {"diff": float(d.mean()), "ci": [float(lo), float(hi)], "p": p, "n": int(d.size)}


def paired_bootstrap_many(diffs, *, n_boot: int = 10000, seed: int = 0, chunk: int = 1000) -> list[dict[str, float]]:
    """:func:`paired_bootstrap_pvalue` of several paired differences over the SAME samples at once.

    ``diffs``: (T, n) float -- row t is a - b of test t. The resamples are the ones
    :func:`paired_bootstrap_pvalue` draws for the same seed (so the numbers agree with it), but each
    chunk of resamples becomes a count matrix W (chunk, n) and the T resampled means are one product
    W @ diffs.T / n: the cost of one test instead of T (the report's 55 source pairs x 3 metrics).
    """
    d = np.atleast_2d(np.asarray(diffs, dtype=np.float64))
    t, n = d.shape
    if n == 0:
        return [{"diff": float("nan"), "ci": [float("nan")] * 2, "p": float("nan"), "n": 0} for _ in range(t)]
    rng = np.random.default_rng(seed)
    means = np.empty((n_boot, t))
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(rows, n))
        counts = np.bincount((idx + n * np.arange(rows)[:, None]).ravel(), minlength=rows * n).reshape(rows, n)
        means[start:start + rows] = counts @ d.T / n
    observed = d.mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975], axis=0)
    extreme = np.count_nonzero(np.abs(means - observed) >= np.abs(observed) - 1e-12, axis=0)
    return [{"diff": float(observed[i]), "ci": [float(lo[i]), float(hi[i])], "p": (1 + int(extreme[i])) / (n_boot + 1),
             "n": int(n)} for i in range(t)]
