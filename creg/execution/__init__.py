"""Running: the Runner (a benchmark, a model, sources, into a run directory), batching, threads, the
blank-image control, ``layers=auto``, and the execution backends (:mod:`creg.execution.backends`)."""
