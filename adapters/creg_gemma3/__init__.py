"""creg's Gemma 3 plugin: registers the ``gemma3`` adapter (Gemma 3 -it checkpoints; imported only when used).

:mod:`creg_gemma3.adapter` holds the adapter, :mod:`creg_gemma3.tiny` builds a tiny random checkpoint for tests.
"""

from creg.plugins.hookspecs import hookimpl


@hookimpl
def register_adapters(register):
    register("gemma3", "creg_gemma3.adapter:Gemma3Adapter",
             description="Gemma 3 -it checkpoints (SigLIP pooled to 256 tokens, optional pan-and-scan crops), via transformers")
