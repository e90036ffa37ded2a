"""Test helpers shipped with creg for plugin authors.

:class:`AdapterContract` is the one base class of contract tests for a
:class:`creg.adapter.VLMAdapter`; subclass it in your test suite (see its module docstring).
Importing this package needs pytest.
"""

from .adapter_contract import AdapterContract, draw_image

__all__ = ["AdapterContract", "draw_image"]
