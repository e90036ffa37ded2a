"""From a run's records to its summary: metric aggregation with CIs, paired tests, the comparison with the
random control, the blank-control statistics, diagnostics and the run's warnings. Runs no model."""
