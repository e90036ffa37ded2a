"""The top-level registry.toml (what a reader of the repository sees) and the copy shipped inside
the package (what an installed creg loads) are the same file: a preset added to one and not the
other would exist only in a clone, or only in an install."""

from pathlib import Path

from creg.config.presets import load_registry

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_registry_is_the_top_level_one():
    assert (ROOT / "creg" / "registry.toml").read_text() == (ROOT / "registry.toml").read_text()


def test_every_first_party_adapter_has_presets_for_the_real_checkpoints():
    presets = load_registry([])
    for name in ("qwen2vl-2b", "qwen2vl-7b", "qwen2.5vl-3b", "qwen2.5vl-7b", "llava-1.5-7b", "llava-next-7b",
                 "internvl3-2b", "internvl3-8b", "smolvlm-2b", "smolvlm-256m", "mistral-small-3.1-24b", "gemma3-4b",
                 "gemma3-12b", "qwen2vl-toy", "none"):
        assert name in presets, name
