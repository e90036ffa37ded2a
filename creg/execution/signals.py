"""SIGTERM ends a run like Ctrl-C: :class:`Terminated` is a KeyboardInterrupt, so every executor leaves a
valid partial run (``"complete": false``) that the same command continues. ``torchrun`` and Slurm stop
their workers with SIGTERM."""

from __future__ import annotations

import signal
import threading
from typing import Callable


class Terminated(KeyboardInterrupt):
    """SIGTERM: handled like Ctrl-C (a partial run with ``"complete": false``)."""


def terminate_as_interrupt() -> Callable[[], None]:
    """Make SIGTERM raise :class:`Terminated` (a KeyboardInterrupt) from here on; returns the undo. Does
    nothing outside the main thread (only it may set signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):  # noqa: ARG001
        raise Terminated("terminated (SIGTERM)")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main interpreter
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, previous)
