"""creg's Qwen2.5-VL plugin: registers the ``qwen2_5vl`` adapter (imported only when used).

:mod:`creg_qwen2_5vl.adapter` holds the adapter, :mod:`creg_qwen2_5vl.tiny` builds a tiny random
Qwen2.5-VL checkpoint for tests.
"""

from creg.plugins.hookspecs import hookimpl


@hookimpl
def register_adapters(register):
    register("qwen2_5vl", "creg_qwen2_5vl.adapter:Qwen2_5VLAdapter",
             description="Qwen2.5-VL (3B/7B-Instruct or a local checkpoint; window-attention vision encoder) via transformers")
