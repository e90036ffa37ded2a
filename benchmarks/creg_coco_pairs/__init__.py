"""COCO-Pairs: balanced direction questions from COCO 2017 instance annotations (paper §5.1)."""

import creg


@creg.hookimpl
def register_benchmarks(register):
    register("coco_pairs", "creg_coco_pairs.benchmark:CocoPairsBenchmark", needs_data=True,
             description="COCO 2017 object pairs with clear left/right/above/below dominance, balanced (needs --data-dir)")
