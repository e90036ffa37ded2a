"""Paths read from annotation files must stay inside the data folder."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath


class UnsafePath(ValueError):
    """A path from a data file is absolute or leaves its folder (``../``)."""


def resolve_inside(root: str | Path, relative: str) -> Path:
    """``root / relative``, refusing absolute paths and paths that leave ``root`` (``..``).

    ``relative`` comes from a data file (a COCO ``file_name``, a VSR ``image``): it may only name
    something below ``root``. Symbolic links that the user placed inside ``root`` are followed
    (a data folder often links to a shared dataset); the data file cannot create them.
    """
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise UnsafePath(f"not a file name: {relative!r}")
    if PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).is_absolute() or PureWindowsPath(relative).drive:
        raise UnsafePath(f"absolute path refused: {relative!r}")
    if ".." in PurePosixPath(relative.replace("\\", "/")).parts:
        raise UnsafePath(f"path leaving the data folder refused: {relative!r}")
    return Path(root) / relative
