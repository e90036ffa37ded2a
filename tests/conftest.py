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


@pytest.fixture(scope="session")
def tiny_qwen2vl_deep_dir(tmp_path_factory):
    """As :func:`tiny_qwen2vl_dir` with 6 decoder layers, so hidden-state indices -2..-5 are
    distinct blocks (the contract's depth check)."""
    from creg_qwen2vl.tiny import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny_qwen2vl_deep"), seed=0, text_layers=6)


@pytest.fixture(scope="session")
def tiny_qwen2_5vl_dir(tmp_path_factory):
    """A tiny random-init Qwen2.5-VL checkpoint (6 decoder layers, window attention in the vision
    encoder), built locally by :func:`creg_qwen2_5vl.tiny.build_tiny_qwen2_5vl`."""
    from creg_qwen2_5vl.tiny import build_tiny_qwen2_5vl

    return build_tiny_qwen2_5vl(tmp_path_factory.mktemp("tiny_qwen2_5vl"), seed=0)
