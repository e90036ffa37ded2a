"""creg's ``planted`` plugin: a hand-built vision-language model whose evidence is known.

:mod:`creg_planted.vision` turns pixels into per-cell object features, :mod:`creg_planted.model`
builds the decoder by hand (no training, no download), :mod:`creg_planted.adapter` puts it behind
the adapter contract and provides the exact causal effect of every vision token
(docs/planted.md).
"""

from creg.plugins.hookspecs import hookimpl


@hookimpl
def register_adapters(register):
    register("planted", "creg_planted.adapter:PlantedAdapter",
             description="hand-built pre-norm VLM over the synthetic scenes with planted evidence and exact causal "
                         "effects per vision token (embedded, no download; docs/planted.md)")
