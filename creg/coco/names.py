"""File names derived from names that come from outside (source names, sample ids, plugin names)."""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_LENGTH = 100


def safe_file_name(name: str, *, default: str = "unnamed", max_length: int = MAX_LENGTH) -> str:
    """``name`` as one safe path component: only ``[A-Za-z0-9._-]``, no leading dot, at most ``max_length`` chars.

    A name that is already safe comes back unchanged; one that had to change gets a short hash of
    the original appended, so two different names never map to the same file
    (``x/../../elsewhere/y`` -> ``x_.._.._elsewhere_y-1a2b3c4d`` stays one file in its folder).
    """
    text = str(name)
    cleaned = _UNSAFE.sub("_", text).lstrip(".") or default
    if cleaned == text and len(text) <= max_length:
        return text
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned[: max_length - len(digest) - 1]}-{digest}"
