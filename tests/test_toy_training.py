"""The toy model's training room (the development tool ``tools.creg_toy``): growth, flipped copies, resumable runs."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from creg.core.sample import relation_from_boxes
from tools.creg_toy.data import FLIP_RELATION, flip_sample, load_adapter, scenes
from tools.creg_toy.growth import grow_checkpoint, layer_map
from tools.creg_toy.training import STATE, ToyConfig, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    from creg_qwen2vl.tiny import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("toy") / "small", seed=0, text_layers=2, vision_depth=1)


def test_toy_package_imports_no_plugin():
    """It reaches the adapter and the scenes through the plugin registry only."""
    root = Path(__file__).resolve().parents[1] / "tools" / "creg_toy"
    for py in root.glob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith(("creg_qwen2vl", "creg_synthetic", "creg_coco", "creg_vsr")) for n in names), py


def test_layer_map_spreads_old_layers_evenly():
    assert layer_map(4, 8) == {0: 0, 1: 2, 2: 4, 3: 6}
    assert layer_map(2, 4) == {0: 0, 1: 2}
    with pytest.raises(ValueError):
        layer_map(4, 2)


def test_growth_keeps_the_function_and_a_larger_image_side_refines_the_grid(small_dir, tmp_path):
    """Identity-initialised blocks: the grown model gives the old model's logits; a larger
    image side gives a finer token grid."""
    grow_checkpoint(small_dir, tmp_path / "deep", text_layers=4, vision_depth=3, seed=1)
    conf = json.loads((tmp_path / "deep" / "config.json").read_text())
    assert conf["text_config"]["num_hidden_layers"] == 4 and conf["vision_config"]["depth"] == 3
    old, deep = load_adapter(small_dir), load_adapter(tmp_path / "deep")
    batch = list(scenes(0, 4))
    a, b = old.forward(batch), deep.forward(batch)
    assert torch.allclose(a.class_logits, b.class_logits, atol=1e-5)
    # the new blocks are not dead: their input projections are initialised
    assert deep.model.model.language_model.layers[1].self_attn.q_proj.weight.abs().sum() > 0
    grow_checkpoint(small_dir, tmp_path / "fine", text_layers=2, vision_depth=1, image_side=2 * 224)
    fine = load_adapter(tmp_path / "fine").forward(batch)
    gh, gw = a.vision[0].grid_hw
    assert fine.vision[0].grid_hw == (2 * gh, 2 * gw)


def test_flipped_copies_mirror_image_boxes_and_relation():
    s = next(scenes(3, 1))
    img = np.asarray(s.load_image())
    for how, array in (("h", img[:, ::-1]), ("v", img[::-1]), ("hv", img[::-1, ::-1])):
        f = flip_sample(s, how)
        assert (np.asarray(f.load_image()) == array).all()
        assert f.relation == FLIP_RELATION[how][s.relation] == relation_from_boxes(f.ref_box, f.tgt_box)
        cx, cy = map(int, f.tgt_box.center)
        assert (np.asarray(f.load_image())[cy, cx] == img[s.image_size[1] - 1 - cy if "v" in how else cy,
                                                             s.image_size[0] - 1 - cx if "h" in how else cx]).all()


def _cfg(small_dir, **kw):
    return ToyConfig(init_from=str(small_dir), steps=3, batch_size=4, warmup=1, eval_n=4, log_every=1, eval_every=2,
                     save_every=10, **kw)


def test_an_interrupted_run_resumes_to_the_same_weights(small_dir, tmp_path):
    whole = train(_cfg(small_dir), tmp_path / "whole", log=lambda m: None)
    part = train(_cfg(small_dir), tmp_path / "parts", log=lambda m: None, stop_at=2)
    assert part["history"][-1]["step"] == 2 and (tmp_path / "parts" / STATE).is_file()
    lines = []
    rest = train(_cfg(small_dir), tmp_path / "parts", log=lines.append)
    assert json.loads(lines[0]) == {"resume": 2}
    assert [h["step"] for h in rest["history"]] == [h["step"] for h in whole["history"]]
    a = torch.load(tmp_path / "whole" / STATE, weights_only=False)["model"]
    b = torch.load(tmp_path / "parts" / STATE, weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the run directory is a checkpoint the adapter loads
    assert load_adapter(tmp_path / "parts").forward(list(scenes(0, 2))).class_logits.shape == (2, 4)
    # another configuration is refused, not mixed in
    with pytest.raises(ValueError, match="another configuration"):
        train(_cfg(small_dir, lr=0.5), tmp_path / "parts", log=lambda m: None)


@pytest.mark.slow
def test_toy_training_is_a_development_tool_not_a_user_command():
    """``python -m tools.creg_toy`` runs from the repository; an installed ``creg`` has no ``toy`` command."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-m", "tools.creg_toy", "train", "--out", "x"], capture_output=True, text=True, cwd=root)
    assert res.returncode == 2 and "--grow-from" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "-m", "creg", "toy", "train", "--out", "x"], capture_output=True, text=True, cwd=root)
    assert res.returncode == 2 and "No such command 'toy'" in res.stderr
