"""What ships is what users run: the wheel built from this tree holds the one registry.toml (the
top-level file, through the link creg/registry.toml) and the toy checkpoint that the preset
``qwen2vl-toy`` names, byte for byte, and none of the toy's training tool."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from creg.config.presets import load_registry

ROOT = Path(__file__).resolve().parents[1]
#: the source tree a wheel is built from (a copy, so that setuptools' build/ folder lands in tmp)
SOURCES = ("pyproject.toml", "README.md", "registry.toml", "creg", "adapters", "benchmarks", "tools")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed: no wheel can be built without build isolation")
    src = tmp_path_factory.mktemp("src")
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True, ignore=junk)
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    (whl,) = out.glob("creg-*.whl")
    return zipfile.ZipFile(whl)


@pytest.mark.slow
def test_wheel_holds_the_top_level_registry(wheel):
    assert wheel.read("creg/registry.toml") == (ROOT / "registry.toml").read_bytes()


@pytest.mark.slow
def test_wheel_holds_the_toy_checkpoint_the_preset_names(wheel):
    model = load_registry([])["qwen2vl-toy"].model
    assert model.startswith("resource:creg/")
    rel = model.removeprefix("resource:")  # creg/PATH: PATH inside the installed package creg
    files = sorted(p for p in (ROOT / rel).iterdir() if p.is_file())
    assert any(p.name == "model.safetensors" for p in files)
    for p in files:
        assert wheel.read(f"{rel}/{p.name}") == p.read_bytes(), p.name


@pytest.mark.slow
def test_wheel_holds_no_toy_training_tool(wheel):
    names = wheel.namelist()
    assert not [n for n in names if n.startswith(("creg_toy/", "tools/"))]
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "creg_toy" not in wheel.read(entry_points).decode()
