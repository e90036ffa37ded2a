"""Presets for Qwen2.5-VL: the hub ones and a local one resolve to the plugin; creg run end to end."""

from __future__ import annotations

from creg.plugins.manager import get_plugins
from creg.config.presets import load_registry
from creg.config.run_config import RunConfig
from creg.config.resolve import resolve_adapter
from creg_qwen2_5vl.adapter import Qwen2_5VLAdapter
from preset_runs import run_with_local_preset


def test_hub_presets_name_the_real_checkpoints(tiny_qwen2_5vl_dir, tmp_path):
    registry = tmp_path / "registry.toml"
    registry.write_text(f'[presets.tiny-qwen2_5vl]\nadapter = "qwen2_5vl"\nmodel = "{tiny_qwen2_5vl_dir}"\n')
    presets = load_registry([registry])
    plugins = get_plugins()
    for name, hub in (("qwen2.5vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct"), ("qwen2.5vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct")):
        cls, config = resolve_adapter(RunConfig(adapter=name), plugins, presets)
        assert cls is Qwen2_5VLAdapter and config.model == hub
    cls, config = resolve_adapter(RunConfig(adapter="tiny-qwen2_5vl"), plugins, presets)
    assert cls is Qwen2_5VLAdapter and config.model == str(tiny_qwen2_5vl_dir)


def test_creg_run_with_a_local_preset_and_the_issue_sources(tiny_qwen2_5vl_dir, tmp_path):
    _, summary = run_with_local_preset(
        tmp_path, adapter="qwen2_5vl", checkpoint=tiny_qwen2_5vl_dir, preset="tiny-qwen2_5vl", ig_steps=8,
        sources="creg,creg_gt,gradcam,gradnorm,integrated_gradients,attention_rollout,gradxact,random,oracle")
    assert isinstance(summary["vlm_accuracy"], float)
