"""The "Writing your own source" example of docs/sources.md runs and passes the contract suite."""

from __future__ import annotations

import re
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "sources.md"
_section = GUIDE.read_text().split("## Writing your own source", 1)[1]
_blocks = re.findall(r"```python\n(.*?)```", _section, flags=re.S)
assert len(_blocks) == 2, "docs/sources.md: the example source and its test class"
exec(compile(_blocks[0] + "\n" + _blocks[1], str(GUIDE), "exec"))  # defines GradSquared, TestGradSquared


def test_the_example_reads_its_option():
    assert GradSquared(layer="-4").options.layer == -4  # noqa: F821 -- defined by the guide
