"""The toy Qwen2-VL shipped with creg (preset ``qwen2vl-toy``).

A ~0.4M-parameter ``Qwen2VLForConditionalGeneration`` trained on creg's synthetic two-object
scenes to answer prompt A (left/right/above/below). :mod:`.training` rebuilds it;
``creg toy train`` / ``creg toy eval`` are the command-line entry points
(:mod:`.commands`); ``checkpoint/`` holds the trained weights. See docs/toy-model.md.
"""

from pathlib import Path

#: The shipped checkpoint directory (a Hugging Face checkpoint, loadable by Qwen2VLAdapter).
CHECKPOINT_DIR = Path(__file__).parent / "checkpoint"

__all__ = ["CHECKPOINT_DIR"]
