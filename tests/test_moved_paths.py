"""Old import paths (before the layered rooms) still import for one release, with a DeprecationWarning that names
the new path, and give the same objects as the new paths (creg/moved.py)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from creg.moved import MOVED


def test_a_third_party_adapters_old_imports_still_work():
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "try:\n    from creg.adapter import VLMAdapter\nexcept DeprecationWarning as w:\n    print('WARNED', w)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "WARNED creg.adapter moved to creg.plugins.adapter" in out
    with pytest.warns(DeprecationWarning):
        old = importlib.import_module("creg.relevance")
    from creg.plugins.relevance import RelevanceSource
    assert old.RelevanceSource is RelevanceSource


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_names_that_went_to_several_rooms_are_found():
    from creg.core.errors import RunError
    from creg.execution.threads import apply_threads
    from creg.run_config import RunConfig, RunError as OldRunError, apply_threads as old_apply  # noqa: F401
    assert OldRunError is RunError and old_apply is apply_threads
    from creg.reporting.figures import sector_names
    from creg.core.compass import sector_names as new
    assert sector_names is new
    with pytest.raises(AttributeError, match="moved to"):
        importlib.import_module("creg.sample").no_such_name


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_every_old_path_imports_and_every_target_exists():
    for old, targets in MOVED.items():
        for t in targets:
            importlib.import_module(t)
        assert importlib.import_module(old).__name__ == old
