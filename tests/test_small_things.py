"""Issue 20, item 7: the README's Python block runs as written, every option says what it does,
--rho-r's help names d_AB, round-off DAE is exported as 0 and every CI has _lo/_hi columns."""

from __future__ import annotations

import re
from pathlib import Path

import click
import numpy as np
import pytest
import torch

from creg.cli import cli
from creg.core.measures import direction_alignment_error

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]


def readme_python() -> str:
    m = re.search(r"<!-- readme-python -->\s*```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert m, "README.md lost its <!-- readme-python --> block"
    return m.group(1)


@pytest.mark.slow
def test_readme_python_block_runs_as_written(tmp_path, monkeypatch):
    pytest.importorskip("pandas")
    monkeypatch.chdir(tmp_path)
    scope: dict = {"__name__": "__main__"}
    exec(compile(readme_python(), "README.md", "exec"), scope)  # noqa: S102 - our own documentation
    assert (tmp_path / "scene.png").is_file() and (tmp_path / "scene-explained.png").is_file()
    assert set(scope["frames"].records["source"]) == {"creg", "random"}


@pytest.mark.parametrize("command", ["run", "explain"])
def test_every_option_has_help(command):
    cmd = cli.commands[command]
    bare = [p.opts[0] for p in cmd.params if isinstance(p, click.Option) and not p.help]
    assert bare == []


def test_rho_r_help_says_d_ab_as_the_code_computes():
    from creg.core.compass import project_to_compass
    from creg.core.sample import Box

    rho = next(p for p in cli.commands["run"].params if p.name == "rho_r")
    assert "d_AB" in rho.help and "units of r_max" not in rho.help
    # A at (20, 20), B at (50, 60): d_AB = 50 px, so --rho-r 1.5 means r_max = 75 px
    c = project_to_compass(torch.ones(4, 4), Box(x0=10, y0=10, x1=30, y1=30), Box(x0=40, y0=50, x1=60, y1=70),
                           (100, 100), rho_r=1.5)
    assert c.d_ab == pytest.approx(50.0) and c.r_max == pytest.approx(75.0)


def test_round_off_dae_is_exactly_zero():
    # Eq. 6 on two atan2 readings of the same direction: 5.7e-15 deg of noise is 0
    assert direction_alignment_error(45.0 + 5.7e-15, 45.0) == 0.0
    assert direction_alignment_error(359.9999999999999, 0.0) == 0.0
    assert direction_alignment_error(10.0, 0.0) == 10.0 and direction_alignment_error(1e-6, 0.0) == pytest.approx(1e-6)
    assert np.array_equal(direction_alignment_error([0.0, 90.0], [1e-13, 0.0]), [0.0, 90.0])


def test_an_uncomputed_ci_still_gets_lo_and_hi_columns(tmp_path):
    pytest.importorskip("pandas")
    import creg

    out = creg.run(adapter="none", sources=["oracle", "random"], n=8, out=str(tmp_path / "r"))
    summary = creg.read_run(out["out"]).summary
    assert {"cos_peak_ci_lo", "cos_peak_ci_hi", "dae_ci_lo", "dae_ci_hi"} <= set(summary.columns)
    assert "cos_peak_ci" not in summary.columns
    records = creg.read_run(out["out"]).records
    assert (records.loc[records["source"] == "oracle", "dae"] == 0.0).all()
