"""creg's InternVL plugin: registers the ``internvl`` adapter (InternVL 2.5 / 3 "-hf" checkpoints; imported only when used).

:mod:`creg_internvl.adapter` holds the adapter, :mod:`creg_internvl.layouts` the tiling geometry,
:mod:`creg_internvl.tiny` builds a tiny random checkpoint for tests.
"""

from creg.plugins.hookspecs import hookimpl


@hookimpl
def register_adapters(register):
    register("internvl", "creg_internvl.adapter:InternVLAdapter",
             description="InternVL 2.5/3 transformers-native (-hf) checkpoints, dynamic tiling with thumbnail, via transformers")
