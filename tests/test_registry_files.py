"""The top-level registry.toml (what a reader of the repository sees) is the one file of presets; the
package ships it through the link creg/registry.toml, so a clone and an install read the same presets."""

from pathlib import Path

from creg.config.presets import load_registry

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_registry_is_the_top_level_one():
    shipped = ROOT / "creg" / "registry.toml"
    assert shipped.is_symlink() and shipped.resolve() == (ROOT / "registry.toml").resolve()


def test_every_first_party_adapter_has_presets_for_the_real_checkpoints():
    presets = load_registry([])
    for name in ("qwen2vl-2b", "qwen2vl-7b", "qwen2.5vl-3b", "qwen2.5vl-7b", "llava-1.5-7b", "llava-next-7b",
                 "internvl3-2b", "internvl3-8b", "smolvlm-2b", "smolvlm-256m", "mistral-small-3.1-24b", "gemma3-4b",
                 "gemma3-12b", "qwen2vl-toy", "none"):
        assert name in presets, name
