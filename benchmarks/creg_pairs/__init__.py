"""Your own pairs: a CSV, JSONL or Parquet file of (image, reference and target names and boxes,
optional relation) as a benchmark, without writing a plugin (docs/benchmarks.md)."""

import creg


@creg.hookimpl
def register_benchmarks(register):
    register("pairs", "creg_pairs.benchmark:PairsBenchmark",
             description="your own rows: image, reference and target names and boxes, optional relation, from a "
                         "CSV/JSONL/Parquet file (--bench-opt file=ROWS; creg explain --from ROWS)")
