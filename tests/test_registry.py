"""registry.toml presets: validated, user files override, resource paths resolve."""

from pathlib import Path

import pytest

from creg.config.presets import RegistryError, load_registry, resolve_model


def test_builtin_presets_name_the_qwen_checkpoints():
    presets = load_registry()
    assert presets["qwen2vl-2b"].model == "Qwen/Qwen2-VL-2B-Instruct"
    assert presets["qwen2vl-7b"].model == "Qwen/Qwen2-VL-7B-Instruct"
    assert presets["qwen2vl-7b"].adapter == "qwen2vl"
    cfg = presets["qwen2vl-7b"].adapter_config(dtype="bfloat16", device=None)
    assert cfg.dtype == "bfloat16" and cfg.device == "auto" and cfg.prompt == "A"


def test_user_registry_adds_and_overrides_via_flag_and_env(tmp_path, monkeypatch):
    f1 = tmp_path / "a.toml"
    f1.write_text('[presets.mine]\nadapter = "qwen2vl"\nmodel = "/models/mine"\n')
    f2 = tmp_path / "b.toml"
    f2.write_text('[presets.mine]\nadapter = "qwen2vl"\nmodel = "/models/other"\ndtype = "float32"\n')
    monkeypatch.setenv("CREG_REGISTRY", str(f1))
    assert load_registry()["mine"].model == "/models/mine"
    p = load_registry([f2])["mine"]
    assert p.model == "/models/other" and p.dtype == "float32" and Path(p.origin) == f2


@pytest.mark.parametrize("body,msg", [
    ('[presets.x]\nmodel = "m"\n', "preset 'x': adapter: Field required"),
    ('[presets.x]\nadapter = "a"\nmodel = "m"\ndtype = "fp8"\n', "preset 'x': dtype"),
    ('[presets.x]\nadapter = "a"\nmodel = "m"\ntypo = 1\n', "preset 'x': typo: Extra inputs"),
    ('[presets.x\n', "not valid TOML"),
])
def test_invalid_presets_fail_with_the_file_and_the_field(tmp_path, body, msg):
    f = tmp_path / "r.toml"
    f.write_text(body)
    with pytest.raises(RegistryError, match=msg):
        load_registry([f])


def test_missing_registry_file(tmp_path):
    with pytest.raises(RegistryError, match="not found"):
        load_registry([tmp_path / "nope.toml"])


def test_resource_models_resolve_inside_installed_packages():
    path = Path(resolve_model("resource:creg_synthetic/scenes.py"))
    assert path.is_file()
    assert resolve_model("Qwen/Qwen2-VL-2B-Instruct") == "Qwen/Qwen2-VL-2B-Instruct"
    with pytest.raises(RegistryError, match="not installed"):
        resolve_model("resource:no_such_pkg/x")
