"""Kept for tests written before the fake VLM moved into creg (``creg.testing.fake_vlm``): a
re-export, so that ``from fake_vlm import FakeVLMAdapter`` in a test merged from another branch
keeps working. New tests import ``from creg.testing.fake_vlm import FakeVLMAdapter``."""

from creg.testing.fake_vlm import *  # noqa: F401,F403
from creg.testing.fake_vlm import FakeVLM, FakeVLMAdapter  # noqa: F401
