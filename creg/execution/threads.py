"""How many intra-op threads a run uses (``--threads``): the default from the cores this process may use, and applying it to torch."""

from __future__ import annotations

import os

from creg.config.run_config import MAX_THREADS


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Threads for a run when ``--threads`` is not given.

    ``OMP_NUM_THREADS`` when set (torchrun sets it to 1 for several ranks per machine); otherwise
    at most 4, no more than this process's share of the cores (cores / ``LOCAL_WORLD_SIZE``, the
    ranks torchrun starts on this machine) and no more than the cores that the 1-minute load
    average leaves idle (at least 1): on a busy machine more threads than idle cores only fight
    each other (issue 13: a shared 2-core machine ran a default run in 473 s with torch's default
    threads and in 26 s with one).
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return min(int(env), MAX_THREADS)
    local = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    share = available_cores() // max(1, int(local)) if local.isdigit() else available_cores()
    try:
        busy = int(round(os.getloadavg()[0]))
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        busy = 0
    return max(1, min(4, share, available_cores() - busy))


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads to ``threads`` (None: :func:`default_threads`); the number used."""
    import torch  # lazy: torch

    n = threads or default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


# -- plugins ------------------------------------------------------------------------------------------
