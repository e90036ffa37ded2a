"""creg's first-party relevance sources, registered through the ``creg`` entry point like any plugin.

Descriptions and ``needs_model`` are given at registration so that ``creg list`` imports no
source module (they import torch). The description is written only here: a loaded class gets it
from its registration (:meth:`creg.plugins.manager.Registration.load`); ``needs_model`` is also the
class's behaviour, and ``tests/test_plugin_hardening.py`` checks the two agree.
"""

import creg


@creg.hookimpl
def register_sources(register):
    register("oracle", "creg.sources.geometry:OracleSource", needs_model=False,
             description="geometry oracle: all relevance at B's centre (ceiling: DAE 0, EA 1)")
    register("random", "creg.sources.geometry:RandomDirectionSource", needs_model=False,
             description="random-sector baseline: evidence in a uniformly random direction (chance: DAE 90, EA 2/K)")
    register("random_relevance", "creg.sources.geometry:RandomRelevanceSource", needs_model=False,
             description="uniformly random relevance on the vision grid (shows the projection's geometric prior)")
    register("creg", "creg.sources.contrastive_multilayer:CregSource",
             description="CREG: contrastive multi-layer Grad x Act, prediction-targeted (Eq. 1-3)")
    register("creg_gt", "creg.sources.contrastive_multilayer:CregGtSource",
             description="CREG: contrastive multi-layer Grad x Act, ground-truth-targeted (Eq. 1-3)")
    register("gradxact", "creg.sources.gradxact:GradXActSource",
             description="Grad x Act at layer -2, target z_gt, no contrastive target (paper §5.1)")
    register("gradnorm", "creg.sources.gradient_norm:GradientNormSource",
             description="gradient norm: ||d z_gt / d h^(-2)||_2 per vision token (paper §5.1)")
    register("gradcam", "creg.sources.gradcam:GradCamSource",
             description="GradCAM on the last vision-encoder layer, target z_gt, upsampled to the token grid (paper §5.1)")
    register("integrated_gradients", "creg.sources.integrated_gradients:IntegratedGradientsSource",
             description="integrated gradients at layer -2, zero baseline, Gauss-Legendre in log alpha, steps doubled from 50 until completeness holds to 5%, target z_gt (paper §5.1)")
    register("attention_rollout", "creg.sources.attention_rollout:AttentionRolloutSource",
             description="attention rollout over all decoder layers, last-token row (paper §5.1)")
    register("target_box", "creg.sources.target_box:TargetBoxSource", needs_model=False,
             description="control: uniform relevance inside the target box B (pure localisation, §6.3)")
    register("random_ref", "creg.sources.random_reference:RandomReferenceSource",
             description="control: CREG relevance projected around a random reference centre (§6.3)")
