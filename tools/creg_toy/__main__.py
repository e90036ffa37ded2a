"""``python -m tools.creg_toy train | eval | probe``: the toy's training tool, run from the repository root."""

from .commands import toy_group

toy_group(prog_name="python -m tools.creg_toy")
