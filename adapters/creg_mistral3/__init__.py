"""creg's Mistral3 plugin: registers the ``mistral3`` adapter (Mistral-Small-3.1 / Pixtral vision; imported only when used).

:mod:`creg_mistral3.adapter` holds the adapter, :mod:`creg_mistral3.reference` the processor's
input ids transcribed for the contract, :mod:`creg_mistral3.tiny` builds a tiny random checkpoint for tests.
"""

from creg.plugins.hookspecs import hookimpl


@hookimpl
def register_adapters(register):
    register("mistral3", "creg_mistral3.adapter:Mistral3Adapter",
             description="Mistral-Small-3.1 / Pixtral-vision (Mistral3) checkpoints, variable resolution with row breaks, via transformers")
