"""creg's Idefics3 plugin: registers the ``idefics3`` adapter (SmolVLM / Idefics3; imported only when used).

:mod:`creg_idefics3.adapter` holds the adapter, :mod:`creg_idefics3.tiny` builds a tiny random checkpoint for tests.
"""

from creg.plugins.hookspecs import hookimpl


@hookimpl
def register_adapters(register):
    register("idefics3", "creg_idefics3.adapter:Idefics3Adapter",
             description="SmolVLM / Idefics3 checkpoints, tiles with row/column markers plus the global image, via transformers")
