"""The API example at the top of docs/user-guide.md and docs/notebooks/quickstart.ipynb run as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def guide_example() -> str:
    text = (ROOT / "docs" / "user-guide.md").read_text()
    m = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/user-guide.md lost its <!-- api-example --> block"
    return m.group(1)


@pytest.mark.slow
def test_user_guide_api_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("pandas")
    monkeypatch.chdir(tmp_path)
    scope: dict = {"__name__": "__main__"}
    exec(compile(guide_example(), "user-guide.md", "exec"), scope)  # noqa: S102 - our own documentation
    ex, frames = scope["ex"], scope["frames"]
    assert (tmp_path / "explained.png").is_file()
    assert set(ex.sources) == {"creg", "attention_rollout"} and ex.answer == "right"
    assert set(frames.records["source"]) == {"creg", "oracle", "random"}


@pytest.mark.slow
def test_quickstart_notebook_executes_headless(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("pandas")
    nb = nbformat.read(ROOT / "docs" / "notebooks" / "quickstart.ipynb", as_version=4)
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Where is the blue square relative to the red circle?" in text and "VLM accuracy" in text
    assert "np.float" not in text and "compass {'E': " in text  # plain numbers, not numpy reprs
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the figure
    assert any("text/html" in o.get("data", {}) and "p_E" in o["data"]["text/html"] for o in outputs)  # the DataFrame
