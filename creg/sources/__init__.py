"""creg's first-party relevance sources, registered through the ``creg`` entry point like any plugin."""

import creg


@creg.hookimpl
def register_sources(register):
    register("oracle", "creg.sources.geometry:OracleSource")
    register("random", "creg.sources.geometry:RandomDirectionSource")
    register("random_relevance", "creg.sources.geometry:RandomRelevanceSource")
    register("creg", "creg.sources.contrastive_multilayer:CregSource")
    register("creg_gt", "creg.sources.contrastive_multilayer:CregGtSource")
    register("gradxact", "creg.sources.gradxact:GradXActSource")
    register("gradnorm", "creg.sources.gradient_norm:GradientNormSource")
    register("gradcam", "creg.sources.gradcam:GradCamSource")
    register("integrated_gradients", "creg.sources.integrated_gradients:IntegratedGradientsSource")
    register("attention_rollout", "creg.sources.attention_rollout:AttentionRolloutSource")
    register("target_box", "creg.sources.target_box:TargetBoxSource")
    register("random_ref", "creg.sources.random_reference:RandomReferenceSource")
