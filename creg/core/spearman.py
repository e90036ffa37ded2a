"""Spearman's rank correlation (no scipy): Pearson's r of the average ranks (ties share their mean rank)."""

from __future__ import annotations

import numpy as np


def average_ranks(x) -> np.ndarray:
    """``(n,)`` ranks 1..n of ``x``, tied values sharing the mean of their ranks."""
    a = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    inverse = np.empty(a.size, dtype=np.intp)
    inverse[order] = np.arange(a.size)
    s = a[order]
    new = np.r_[True, s[1:] != s[:-1]]
    dense = np.cumsum(new)[inverse]  # 1-based group of each value
    bounds = np.r_[np.flatnonzero(new), a.size]  # start of each group, then n
    return 0.5 * (bounds[dense] + bounds[dense - 1] + 1)


def spearman(x, y) -> float | None:
    """Spearman's rho of two equally long vectors; None when either is constant (undefined)."""
    rx, ry = average_ranks(x), average_ranks(y)
    if rx.size != ry.size:
        raise ValueError(f"spearman: {rx.size} values against {ry.size}")
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return None if den <= 1e-12 else float((rx * ry).sum() / den)
