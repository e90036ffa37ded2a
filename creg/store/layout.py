"""A run directory's layout: its file names, and the rules every path into it obeys (no name from data leaves
the folder, no symbolic link is followed)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from creg.core.errors import RunError

CONFIG = "config.json"
SAMPLES = "samples.jsonl"
RECORDS = "records.jsonl"
SKIPPED = "skipped.jsonl"
REJECTED = "rejected.jsonl"
SUMMARY = "summary.json"
TABLE = "table.md"


class RunDirError(RunError):
    """The directory is not a (readable, continuable, free) run directory; the message says why."""


def safe_name(name: str) -> str:
    """A file-name-safe form of ``name`` (a source or figure name from a plugin or a run directory):
    anything but letters, digits, ``.``, ``_`` and ``-`` becomes ``_``; no leading dot."""
    out = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return out or "_"


def inside(root: Path, rel: str) -> Path:
    """``root / rel`` with every part of ``rel`` made safe: a path from data never leaves ``root``."""
    parts = [safe_name(p) for p in Path(rel).parts if p not in ("", ".", "..", "/")]
    if not parts:
        raise ValueError(f"empty artifact name {rel!r}")
    return root.joinpath(*parts)


def refuse_links(root: Path) -> None:
    """:class:`RunDirError` (one line) if an entry of the run directory ``root`` (``.lock``, ``parts/``,
    ``records.jsonl``, ``figures/``, ...) is a symbolic link: the store never reads, writes or deletes
    through one, so nothing outside the folder is touched."""
    try:
        with os.scandir(root) as it:
            links = sorted(e.name for e in it if e.is_symlink())
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise RunDirError(f"{root} is not a directory") from None
    if links:
        raise RunDirError(f"{root}: {', '.join(links)} {'is a symbolic link' if len(links) == 1 else 'are symbolic links'}; "
                          "creg reads and writes only the run directory's own files (replace the link with the file or folder itself)")


def no_link_below(root: Path, path: Path) -> Path:
    """``path`` (under ``root``) if no folder or file on the way from ``root`` is a symbolic link, else RunDirError."""
    at = Path(root)
    for part in Path(path).relative_to(root).parts:
        at = at / part
        if at.is_symlink():
            raise RunDirError(f"{at} is a symbolic link; creg writes only inside the run directory "
                              "(replace the link with the file or folder itself)")
    return path
