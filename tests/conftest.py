"""Shared fixtures: a tiny random Qwen2-VL checkpoint built once per test session."""

from __future__ import annotations

import pytest
import torch

# The test models are tiny: one thread is faster than several fighting over shared cores.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_qwen2vl_dir(tmp_path_factory):
    """A tiny random-init Qwen2-VL checkpoint directory (4 decoder layers, hidden 64), built
    locally by :func:`creg_qwen2vl.tiny.build_tiny_qwen2vl`; loads like a hub checkpoint."""
    from creg_qwen2vl.tiny import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny_qwen2vl"), seed=0)
