"""Field types shared by the first-party sources' ``Options`` models.

They accept what ``--source-opt`` hands over (JSON-parsed values or plain strings: ``-2``,
``"-2,-3"``, ``[-2, -3]``, ``"[-2,-3]"``, ``MAX``) as well as Python values from code.
"""

from __future__ import annotations

from typing import Any

from pydantic import BeforeValidator

from creg.plugins.options import Layer, Layers  # noqa: F401  (one implementation: creg.plugins.options)


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


#: a string compared case-insensitively (use with ``Literal[...]``; ``creg.plugins.options.Choice`` does both).
Lowercase = BeforeValidator(_lower)
