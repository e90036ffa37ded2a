"""File primitives of the run store: atomic writes that honour the umask, JSON lines that keep
NaN / inf and report a bad line by its number, and the writer's exclusive lock.

Only :mod:`creg.store` uses these; everything else goes through :class:`creg.store.RunStore`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

T = TypeVar("T")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half of one.

    The temporary file is created with mode 0o666 filtered by the umask (``tempfile.mkstemp``
    would make it 0600), so atomically written files get the same mode as appended ones.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """JSON text; NaN and +-inf are written as ``NaN`` / ``Infinity`` / ``-Infinity`` so they round-trip."""
    return json.dumps(obj, indent=indent, allow_nan=True, ensure_ascii=False)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, dumps(obj, indent=2) + "\n")


class LinkRefused(OSError):
    """A run directory's entry is a symbolic link (or not the regular file it should be): creg never
    writes, truncates or deletes through one."""


def open_no_follow(path: Path, flags: int, mode: int = 0o666) -> int:
    """``os.open(path, flags | O_NOFOLLOW)``: :class:`LinkRefused` (one line) if ``path`` is a symbolic
    link, so a link planted in a run directory never redirects a write outside it."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP or Path(path).is_symlink():
            raise LinkRefused(f"{path} is a symbolic link: creg writes only regular files inside the run "
                              "directory (replace the link with the file itself)") from None
        raise


def append_lines(path: Path, lines: Iterable[str]) -> None:
    """Append whole lines and fsync: after a crash the file ends with whole lines or one torn line.
    A symbolic link at ``path`` is refused (:class:`LinkRefused`), never followed."""
    text = "".join(line + "\n" for line in lines)
    if not text:
        return
    fd = open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


@dataclass
class JsonLines:
    """The valid rows of a JSON-lines file, and what was wrong with the others."""

    rows: list[Any]
    line_numbers: list[int]  # 1-based line of each row
    problems: list[str]  # "records.jsonl line 5: ..." for every bad line
    bad_lines: list[tuple[int, str, str]]  # (line number, error, text) of every bad line but a torn tail
    torn_tail: bool  # the file ends in a partial line (a crash mid-write)


def read_json_lines(path: Path, parse: Callable[[Any], T]) -> JsonLines:
    """Parse every line of ``path`` with ``parse`` (a dict -> row function that raises ``ValueError``).

    A bad line is reported with its number and skipped; the lines after it are still read.
    A last line without its newline is a torn write: reported, not a row.
    """
    out = JsonLines([], [], [], [], False)
    path = Path(path)
    if not path.exists():
        return out
    raw = path.read_bytes()
    for no, line in enumerate(raw.splitlines(keepends=True), start=1):
        if not line.endswith(b"\n"):
            out.torn_tail = True
            out.problems.append(f"{path.name} line {no}: incomplete last line (a write was cut off); ignored")
            break
        text = line.decode("utf-8", errors="replace").strip()
        if not text:
            continue
        try:
            out.rows.append(parse(json.loads(text)))
            out.line_numbers.append(no)
        except (ValueError, TypeError, KeyError) as e:  # pydantic's ValidationError is a ValueError
            msg = _short(e)
            out.problems.append(f"{path.name} line {no}: {msg}; ignored")
            out.bad_lines.append((no, msg, text))
    return out


def _short(e: Exception) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}"


class LockBusy(RuntimeError):
    """Another process holds the run directory's lock."""


class DirLock:
    """An exclusive ``fcntl`` lock on ``DIR/.lock`` held while a process writes the run directory.

    The kernel releases it when the process ends, however it ends (kill -9 included), so a
    stale lock file never blocks a later run.
    """

    NAME = ".lock"

    def __init__(self, directory: Path):
        self.path = Path(directory) / self.NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; :class:`LockBusy` if another process holds it, :class:`LinkRefused` if
        ``.lock`` is a symbolic link (it is never followed, so its target is never truncated)."""
        fd = open_no_follow(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockBusy(holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
