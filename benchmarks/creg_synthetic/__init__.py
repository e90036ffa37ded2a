"""creg's embedded default benchmark: procedurally drawn two-object scenes (no download)."""

import creg


@creg.hookimpl
def register_benchmarks(register):
    register("synthetic", "creg_synthetic.benchmark:SyntheticBenchmark",
             description="procedurally drawn two-object scenes, balanced classes (embedded, no download)")
