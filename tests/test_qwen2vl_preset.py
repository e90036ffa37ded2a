"""A registry preset naming a local Qwen2-VL directory loads through the same code path as the
shipped ``qwen2vl-2b`` / ``qwen2vl-7b`` presets (plugin lookup -> AdapterConfig -> load)."""

from __future__ import annotations

from creg.plugins.manager import get_plugins
from creg.config.presets import load_registry
from creg.config.run_config import RunConfig
from creg.config.resolve import resolve_adapter
from creg.core.sample import make_sample
from creg.testing import draw_image
from creg_qwen2vl.adapter import Qwen2VLAdapter
from preset_runs import run_with_local_preset


def test_local_preset_loads_like_the_hub_presets(tiny_qwen2vl_dir, tmp_path):
    registry = tmp_path / "registry.toml"
    registry.write_text(
        f'[presets.tiny-qwen2vl]\nadapter = "qwen2vl"\nmodel = "{tiny_qwen2vl_dir}"\ndtype = "float32"\ndevice = "cpu"\n'
    )
    presets = load_registry([registry])
    plugins = get_plugins()
    hub_cls, hub_config = resolve_adapter(RunConfig(adapter="qwen2vl-7b"), plugins, presets)
    cls, config = resolve_adapter(RunConfig(adapter="tiny-qwen2vl"), plugins, presets)
    assert cls is hub_cls is Qwen2VLAdapter
    assert hub_config.model == "Qwen/Qwen2-VL-7B-Instruct" and config.model == str(tiny_qwen2vl_dir)
    adapter = cls.load(config)
    sample = make_sample(
        id="p", image=draw_image((112, 84), noise_seed=3), image_size=(112, 84), ref_name="dog",
        ref_box={"x0": 0, "y0": 0, "x1": 20, "y1": 20}, tgt_name="cat",
        tgt_box={"x0": 60, "y0": 40, "x1": 100, "y1": 80}, relation="right",
    )
    assert adapter.forward([sample]).class_logits.shape == (1, 4)


def test_creg_run_with_a_local_preset_reports_accuracy_and_every_source(tiny_qwen2vl_dir, tmp_path):
    """Issue 3/4 end to end: a preset for a locally built checkpoint, the paper's sources, one table."""
    _, summary = run_with_local_preset(
        tmp_path, adapter="qwen2vl", checkpoint=tiny_qwen2vl_dir, preset="tiny-qwen2vl", ig_steps=8,
        sources="creg,creg_gt,gradcam,gradnorm,integrated_gradients,attention_rollout,gradxact,target_box,random,oracle")
    assert isinstance(summary["vlm_accuracy"], float)
    assert summary["sources"]["oracle"]["dae"] < 1e-9
