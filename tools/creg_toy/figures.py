"""The training curve of a toy run (needs matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence


def plot_history(history: Sequence[dict[str, Any]], png: str | Path, title: str = "toy Qwen2-VL") -> None:
    """Training loss (running mean) and held-out accuracy / flip equivariance against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [h for h in history if "train_loss" in h]
    evals = [h for h in history if "eval" in h]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot([h["step"] for h in train], [h["train_loss"] for h in train], label="train loss (running)")
    a1.axhline(math.log(4), ls=":", c="gray", label="chance (ln 4)")
    a1.set_xlabel("step"); a1.set_ylabel("cross-entropy"); a1.legend()
    steps = [h["step"] for h in evals]
    a2.plot([h["step"] for h in train], [h["train_acc"] for h in train], label="train acc (running)", alpha=0.6)
    a2.plot(steps, [h["eval"]["accuracy"] for h in evals], "o-", label="held-out accuracy")
    for key, name in (("flip_h", "left-right"), ("flip_v", "top-bottom")):
        if evals and key in evals[0]["eval"]:
            a2.plot(steps, [h["eval"][key] for h in evals], ".--", label=f"flip equivariance, {name}")
    a2.axhline(0.25, ls=":", c="gray")
    a2.set_ylim(0, 1.02); a2.set_xlabel("step"); a2.set_ylabel("share"); a2.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
