"""One process runs the whole benchmark: ``creg run``, ``creg.run`` and :meth:`creg.execution.runner.Runner.run`.

The run directory is opened (its lock, the resume check), the model loaded and checked, every
sample not yet finished explained in benchmark order, and the summary written; with ``--control
blank`` the blank-image control follows (:mod:`creg.execution.blank_control`) and the summary is
written again with its comparison. ``elapsed_s`` counts the loop (the model load excluded).
"""

from __future__ import annotations


from creg.execution.blank_control import run_blank
from creg.execution.signals import terminate_as_interrupt


class LocalExecutor:
    """Runs a Runner in this process (:class:`creg.execution.backends.base.Executor`)."""

    name = "local"

    def run(self, runner):
        """Run ``runner`` (a :class:`creg.execution.runner.Runner`) here; its :class:`~creg.execution.runner.RunResult`."""
        restore = terminate_as_interrupt()  # SIGTERM ends the run like Ctrl-C, from here on
        try:
            with runner.writer() as store:
                runner.prepare(store)
                result = runner.process(store)
                if runner.config.controls:  # the same samples again, into RUN_DIR/<control>
                    run_blank(runner)
                    result.summary, result.table, _ = runner.write_summary(
                        store, complete=True, elapsed_s=result.summary.get("elapsed_s", 0.0))
                return result
        finally:
            restore()
