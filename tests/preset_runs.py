"""``creg run`` through a registry preset that names a locally built checkpoint: the path a hub
preset takes (``from preset_runs import run_with_local_preset``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def run_with_local_preset(tmp_path: Path, *, adapter: str, checkpoint: str | Path, sources: str, ig_steps: int,
                          preset: str = "tiny") -> tuple[Any, dict]:
    """``creg run --adapter PRESET --source SOURCES`` on 2 synthetic scenes, integrated gradients at
    ``ig_steps``. Asserts that it succeeded and that summary.json and the table hold every source,
    in order, over both samples; returns the click result and the summary."""
    from click.testing import CliRunner

    from creg.cli import cli

    registry = tmp_path / "registry.toml"
    registry.write_text(f'[presets.{preset}]\nadapter = "{adapter}"\nmodel = "{checkpoint}"\n')
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--registry", str(registry), "--adapter", preset, "--source", sources,
                                   "--source-opt", f"integrated_gradients.steps={ig_steps}", "--bench", "synthetic",
                                   "--n", "2", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["sources"]) == sources.split(",")
    for name in sources.split(","):
        assert f"| {name} | 2 |" in res.output
    return res, summary
