"""Scoring: one pipeline from a relevance map to a scored record (:mod:`creg.scoring.pipeline`) and
the metric registry that every summary, table and test is driven by (:mod:`creg.scoring.registry`)."""

from .registry import Metric, MetricRegistry, collect_metrics, metric_registry

__all__ = ["Metric", "MetricRegistry", "collect_metrics", "metric_registry", "ScoringSettings", "score_map",
           "sample_facts", "explain_batch", "BatchResult", "SampleError", "PluginOutputError"]


def __getattr__(name):  # the pipeline imports torch; load it when asked for
    if name in ("ScoringSettings", "score_map", "sample_facts", "explain_batch", "BatchResult", "SampleError",
                "PluginOutputError", "PluginError"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
