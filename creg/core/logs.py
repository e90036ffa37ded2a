"""creg's log messages: the ``creg`` logger of the :mod:`logging` module.

Progress and notes ("loading qwen2vl ...", "resuming: 40 samples already done", report notes) go to
the ``creg`` logger at INFO; warnings at WARNING. Results (the Table-1-style table, a comparison,
``--json``) are printed to stdout by the commands, never logged.

* The CLI: ``creg -v|-q COMMAND`` or ``creg COMMAND -v|-q`` (:func:`configure`): ``-q`` shows warnings
  and errors only (and hides the progress bar), ``-qq`` errors only, ``-v`` adds DEBUG messages.
* A library user who configures :mod:`logging` (a handler on the root or the ``creg`` logger) gets
  creg's messages there; otherwise creg writes INFO and above to stderr as plain lines, as the CLI does.
"""

from __future__ import annotations

import logging
import sys

LOGGER = logging.getLogger("creg")


class StderrHandler(logging.Handler):
    """Plain message lines on the *current* ``sys.stderr`` (looked up per message, so a redirected or
    captured stderr -- click's test runner, a notebook -- receives them)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never break a run
            self.handleError(record)


def level_for(verbosity: int) -> int:
    """-2 (``-qq``): ERROR, -1 (``-q``): WARNING, 0: INFO, 1+ (``-v``): DEBUG."""
    return {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG if verbosity > 0 else logging.ERROR)


def configure(verbosity: int = 0) -> None:
    """Send the ``creg`` logger's messages at ``level_for(verbosity)`` and above to stderr (the CLI)."""
    for h in [h for h in LOGGER.handlers if isinstance(h, StderrHandler)]:
        LOGGER.removeHandler(h)
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    LOGGER.addHandler(handler)
    LOGGER.setLevel(level_for(verbosity))


def _ensure_handler() -> None:
    if not LOGGER.handlers and not logging.getLogger().handlers:
        configure(0)


def info(message: str) -> None:
    """Log ``message`` at INFO (the default ``log`` callback of creg's functions)."""
    _ensure_handler()
    LOGGER.info(message)


def warning(message: str) -> None:
    _ensure_handler()
    LOGGER.warning(message)


def quiet() -> bool:
    """Whether INFO messages (and so progress bars) are hidden."""
    return not LOGGER.isEnabledFor(logging.INFO)
