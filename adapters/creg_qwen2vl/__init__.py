"""creg's Qwen2-VL plugin: registers the ``qwen2vl`` adapter (imported only when used).

:mod:`creg_qwen2vl.adapter` holds the adapter, :mod:`creg_qwen2vl.tiny` builds a tiny random
Qwen2-VL checkpoint for tests and toy training.
"""

from creg.hookspecs import hookimpl


@hookimpl
def register_adapters(register):
    register("qwen2vl", "creg_qwen2vl.adapter:Qwen2VLAdapter",
             description="Qwen2-VL (Qwen/Qwen2-VL-*-Instruct and local checkpoints of that architecture)")
from .toy.commands import register_commands  # noqa: E402,F401  (`creg toy train/eval`, docs/toy-model.md)
