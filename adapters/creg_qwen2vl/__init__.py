"""creg's Qwen2-VL plugin: registers the ``qwen2vl`` adapter (imported only when used).

:mod:`creg_qwen2vl.adapter` holds the adapter, :mod:`creg_qwen2vl.tiny` builds a tiny random
Qwen2-VL checkpoint for tests and toy training.
"""

from creg.plugins.hookspecs import hookimpl


@hookimpl
def register_adapters(register):
    register("qwen2vl", "creg_qwen2vl.adapter:Qwen2VLAdapter",
             description="Qwen2-VL (Qwen/Qwen2-VL-*-Instruct and local checkpoints of that architecture)")
