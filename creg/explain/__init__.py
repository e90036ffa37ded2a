"""Explaining a batch: the shared passes the sources asked for (:mod:`creg.explain.context`), one pipeline from a
relevance map to a scored record (:mod:`creg.explain.pipeline`), the causal occlusion score
(:mod:`creg.explain.occlusion`) and the per-block measurements of :mod:`creg.explain.layers`."""
