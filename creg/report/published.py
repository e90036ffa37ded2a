"""The CREG paper's published numbers (Qwen2-VL-7B), as data with their provenance (table, row,
column), so that ``creg reproduce`` can set a run's numbers beside them.

Transcribed from the paper (creg-paper.md in the development checkout): Table 1 (§5.2), Table 3
(§5.3), Table 4 (§5.4), Table 5 (§5.5/§6.3), Table 6 (App. A.1), §6.1 (flip) and §6.2 (per-class
accuracy). Nothing here is computed.

DAE readings (docs/paper-to-code.md, "θ̂_peak"): Eq. 6 defines θ̂_peak as the *centre* of the peak
sector, so the paper's DAE is compared with creg's ``dae_sector`` -- except the geometry oracle's
0.0, which only creg's default ``dae`` (the evidence's direction inside the peak sector) can reach.
``reading`` names the metric of ours that each published number is set beside.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """One number of the paper."""

    table: str  # "Table 1", "§6.1", ...
    row: str  # the row as printed
    column: str  # the column as printed
    benchmark: str  # creg benchmark name ("vsr", "coco_pairs")
    metric: str  # "dae", "ea", "vlm_accuracy", "cos", "delta_true", "delta_opp", "flip_r"
    value: float
    n: int | None = None
    ci: tuple[float, float] | None = None
    source: str | None = None  # creg source name of the row, where the row is a method
    variant: str | None = None  # ablation / prompt configuration name (creg.experiments.variants)
    subset: str | None = None  # "all", "correct", "incorrect", a relation class
    reading: str | None = None  # which of our metrics it is compared with (see the module docstring)


def _t1(row, source, bench, n, dae, ea, dae_ci=None, ea_ci=None):
    col = "VSR" if bench == "vsr" else "COCO-Pairs"
    reading = "dae" if source == "oracle" else "dae_sector"
    return [Published("Table 1", row, f"{col} DAE↓", bench, "dae", dae, n, dae_ci, source, reading=reading),
            Published("Table 1", row, f"{col} EA↑", bench, "ea", ea, n, ea_ci, source, reading="ea")]


#: Table 1: directional attribution on Qwen2-VL-7B (VSR n=240, COCO-Pairs n=300); CIs printed for CREG only.
TABLE1 = [
    *_t1("Geo. oracle", "oracle", "vsr", 240, 0.0, 1.000), *_t1("Geo. oracle", "oracle", "coco_pairs", 300, 0.0, 1.000),
    *_t1("CREG (pred)", "creg", "vsr", 240, 64.8, 0.458, (58, 72), (0.39, 0.53)),
    *_t1("CREG (pred)", "creg", "coco_pairs", 300, 55.5, 0.553, (50, 61), (0.50, 0.61)),
    *_t1("CREG (gt)", "creg_gt", "vsr", 240, 68.3, 0.438, (61, 76), (0.38, 0.50)),
    *_t1("CREG (gt)", "creg_gt", "coco_pairs", 300, 57.1, 0.523, (52, 62), (0.47, 0.58)),
    *_t1("Attn. rollout", "attention_rollout", "vsr", 240, 75.2, 0.392),
    *_t1("Attn. rollout", "attention_rollout", "coco_pairs", 300, 71.6, 0.433),
    *_t1("Grad norm", "gradnorm", "vsr", 240, 86.3, 0.300), *_t1("Grad norm", "gradnorm", "coco_pairs", 300, 76.4, 0.377),
    *_t1("Integ. Grad", "integrated_gradients", "vsr", 240, 86.9, 0.292),
    *_t1("Integ. Grad", "integrated_gradients", "coco_pairs", 300, 78.2, 0.373),
    *_t1("GradCAM", "gradcam", "vsr", 240, 96.8, 0.196), *_t1("GradCAM", "gradcam", "coco_pairs", 300, 84.9, 0.310),
    *_t1("Random", "random_relevance", "vsr", 240, 91.8, 0.221),
    *_t1("Random", "random_relevance", "coco_pairs", 300, 91.2, 0.217),
]


def _t3(bench, subset, n, gt_dae, gt_ea, pred_dae, pred_ea):
    row = f"{'VSR' if bench == 'vsr' else 'COCO-Pairs'} {subset.capitalize()} (n={n})"
    return [Published("Table 3", row, "GT-targeted DAE↓", bench, "dae", gt_dae, n, None, "creg_gt", subset=subset, reading="dae_sector"),
            Published("Table 3", row, "GT-targeted EA↑", bench, "ea", gt_ea, n, None, "creg_gt", subset=subset, reading="ea"),
            Published("Table 3", row, "Pred-targeted DAE↓", bench, "dae", pred_dae, n, None, "creg", subset=subset, reading="dae_sector"),
            Published("Table 3", row, "Pred-targeted EA↑", bench, "ea", pred_ea, n, None, "creg", subset=subset, reading="ea")]


#: Table 3: correct vs incorrect, gt- vs pred-targeted CREG; the VLM accuracies are in its group headers.
TABLE3 = [
    Published("Table 3", "VSR (VLM ACC = 55.8%)", "header", "vsr", "vlm_accuracy", 0.558, 240),
    *_t3("vsr", "all", 240, 68.3, 0.438, 64.8, 0.458), *_t3("vsr", "correct", 134, 63.2, 0.515, 63.2, 0.515),
    *_t3("vsr", "incorrect", 106, 74.7, 0.340, 66.8, 0.387),
    Published("Table 3", "COCO-Pairs (VLM ACC = 41.3%)", "header", "coco_pairs", "vlm_accuracy", 0.413, 300),
    *_t3("coco_pairs", "all", 300, 57.1, 0.523, 55.5, 0.553), *_t3("coco_pairs", "correct", 124, 46.6, 0.645, 46.6, 0.645),
    *_t3("coco_pairs", "incorrect", 176, 64.5, 0.438, 61.7, 0.489),
]

#: Table 4: COS of CREG's direction, grey fill (the paper's only operator), full datasets.
TABLE4 = [
    Published("Table 4", "VSR", "ΔS_true", "vsr", "delta_true", -0.476, 240, source="creg"),
    Published("Table 4", "VSR", "ΔS_opp", "vsr", "delta_opp", -0.060, 240, source="creg"),
    Published("Table 4", "VSR", "COS↑", "vsr", "cos", 0.417, 240, source="creg"),
    Published("Table 4", "COCO-Pairs", "ΔS_true", "coco_pairs", "delta_true", -0.464, 300, source="creg"),
    Published("Table 4", "COCO-Pairs", "ΔS_opp", "coco_pairs", "delta_opp", -0.018, 300, source="creg"),
    Published("Table 4", "COCO-Pairs", "COS↑", "coco_pairs", "cos", 0.446, 300, source="creg"),
]

#: Table 5: ablation on VSR (60 samples); variant names of creg.experiments.variants.ablation_configs.
TABLE5 = [
    p for variant, row, dae, ea in (("default", "CREG (default)", 61.8, 0.483), ("k4", "K = 4 sectors", 60.9, 0.517),
                                    ("single_layer", "Single layer (l = -2)", 64.4, 0.467),
                                    ("no_contrastive", "No contrastive", 82.3, 0.333))
    for p in (Published("Table 5", row, "DAE↓", "vsr", "dae", dae, 60, source="creg", variant=variant, reading="dae_sector"),
              Published("Table 5", row, "EA↑", "vsr", "ea", ea, 60, source="creg", variant=variant, reading="ea"))
]

#: Table 6: prompt sweep on a 30-sample VSR development subset.
TABLE6 = [
    p for variant, acc, dae in (("A", 0.567, 57.9), ("B", 0.367, 64.3), ("C", 0.533, 62.9))
    for p in (Published("Table 6", f"{variant}", "VLM ACC", "vsr", "vlm_accuracy", acc, 30, variant=variant),
              Published("Table 6", f"{variant}", "DAE", "vsr", "dae", dae, 30, source="creg", variant=variant, reading="dae_sector"))
]

#: §6.1: Pearson r between a compass and the mirrored compass of the flipped image (CREG, n=60).
FLIP = [Published("§6.1", "flip equivariance", "r", "vsr", "flip_r", -0.065, 60, source="creg")]

#: §6.2: per-class VLM accuracy on VSR.
PER_CLASS = [Published("§6.2", "per-class VLM accuracy", rel, "vsr", "vlm_accuracy", acc, None, subset=rel)
             for rel, acc in (("left", 0.738), ("right", 0.674), ("above", 0.587), ("below", 0.300))]

ALL = [*TABLE1, *TABLE3, *TABLE4, *TABLE5, *TABLE6, *FLIP, *PER_CLASS]


def published(*, table: str | None = None, benchmark: str | None = None, **fields) -> list[Published]:
    """The published numbers matching every given field (``source="creg"``, ``metric="dae"``, ...)."""
    out = []
    for p in ALL:
        if table is not None and p.table != table:
            continue
        if benchmark is not None and p.benchmark != benchmark:
            continue
        if all(getattr(p, k) == v for k, v in fields.items()):
            out.append(p)
    return out


def one(**fields) -> Published | None:
    """The single published number matching ``fields`` (None when the paper has none)."""
    found = published(**fields)
    return found[0] if len(found) == 1 else None
