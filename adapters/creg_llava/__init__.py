"""creg's LLaVA plugin: registers the ``llava`` adapter (LLaVA-1.5 and LLaVA-NeXT; imported only when used).

:mod:`creg_llava.adapter` holds the adapter, :mod:`creg_llava.layouts` / :mod:`creg_llava.geometry`
the preprocessing geometry, :mod:`creg_llava.tiny` builds tiny random checkpoints for tests.
"""

from creg.plugins.hookspecs import hookimpl


@hookimpl
def register_adapters(register):
    register("llava", "creg_llava.adapter:LlavaAdapter",
             description="LLaVA-1.5 and LLaVA-NeXT (llava-hf checkpoints: centre crop or pad, any-resolution tiles) via transformers")
