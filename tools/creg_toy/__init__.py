"""The toy Qwen2-VL (preset ``qwen2vl-toy``) and its training room: ``creg toy train | eval``.

A plugin of its own (entry point ``creg_toy``) that contributes the ``toy`` command. It reaches
the ``qwen2vl`` adapter and the ``synthetic`` benchmark through creg's plugin registry and
imports neither plugin. :mod:`.growth` grows a checkpoint (identity-initialised blocks, a finer
token grid), :mod:`.data` builds batches of scenes and their flipped copies, :mod:`.training`
trains resumably, :mod:`.commands` is the command line; ``checkpoint/`` holds the shipped
weights (docs/toy-model.md).
"""

from pathlib import Path

from creg.plugins.hookspecs import hookimpl

#: The shipped checkpoint directory (a Hugging Face checkpoint, loadable by the qwen2vl adapter).
CHECKPOINT_DIR = Path(__file__).parent / "checkpoint"


@hookimpl
def register_commands(cli) -> None:
    from .commands import toy_group

    cli.add_command(toy_group)
