"""The chi-squared goodness-of-fit test against a uniform distribution.

scipy is not a dependency: the survival function is the regularised upper incomplete gamma
function, ``P(X >= x) = Q(df / 2, x / 2)`` for ``X ~ chi2(df)``, which torch provides
(``torch.special.gammaincc``, float64).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def chi2_sf(x: float, df: int) -> float:
    """``P(X >= x)`` for ``X ~ chi2(df)``; 1.0 for ``x <= 0``. df = 2 gives ``exp(-x / 2)``."""
    import torch  # lazy: torch

    if df < 1:
        raise ValueError(f"chi-squared needs df >= 1, got {df}")
    if not x > 0:
        return 1.0
    a = torch.tensor(df / 2.0, dtype=torch.float64)
    return float(torch.special.gammaincc(a, torch.tensor(x / 2.0, dtype=torch.float64)))


def chi2_uniform(counts: Sequence[int]) -> dict[str, float | int]:
    """Pearson's chi-squared test of ``counts`` (K cells) against equal expected counts:
    ``stat = sum_k (O_k - E)^2 / E`` with ``E = n / K``, ``df = K - 1``, ``p = chi2_sf(stat, df)``.
    With no observations (or one cell) the test is undefined: ``p`` is None."""
    o = np.asarray(counts, dtype=np.float64)
    n, k = float(o.sum()), o.size
    if n <= 0 or k < 2:
        return {"stat": None, "df": max(k - 1, 0), "p": None, "n": int(n)}
    e = n / k
    stat = float(((o - e) ** 2).sum() / e)
    return {"stat": stat, "df": k - 1, "p": chi2_sf(stat, k - 1), "n": int(n)}
