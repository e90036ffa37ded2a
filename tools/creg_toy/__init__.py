"""The toy Qwen2-VL's training room, a development tool: ``python -m tools.creg_toy train | eval | probe``
from the repository root (docs/toy-model.md).

It is not shipped: what users install is the checkpoint it made, creg's package data
``creg/qwen2vl-toy/`` (preset ``qwen2vl-toy``). It reaches the ``qwen2vl`` adapter and the
``synthetic`` benchmark through creg's plugin registry and imports neither plugin. :mod:`.growth`
grows a checkpoint (identity-initialised blocks, a finer token grid), :mod:`.data` builds batches of
scenes and their flipped copies, :mod:`.training` trains resumably, :mod:`.commands` is the command
line; ``base_0.1/`` and ``base_0.2/`` are the earlier toys the recipe starts from.
"""
