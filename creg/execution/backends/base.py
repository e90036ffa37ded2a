"""The execution seam: an :class:`Executor` runs a :class:`creg.execution.runner.Runner` into its run directory.

The Runner knows *what* a run is (its configuration, benchmark, model and sources, how one batch is
explained and written, how a run is summarised); an executor decides *where and in how many
processes* its samples are explained. An executor drives the Runner through its public steps only:

* :meth:`~creg.execution.runner.Runner.writer`: the run store for the run directory, or for one
  worker's part of it (``creg.store.part_path``);
* :meth:`~creg.execution.runner.Runner.prepare` (one process: load the model, ``layers=auto``, check
  the layers, start the store) or :meth:`~creg.execution.runner.Runner.check_model` and
  :meth:`~creg.execution.runner.Runner.execution` (a worker that does not write the run directory);
* :meth:`~creg.execution.runner.Runner.pending_samples` and the
  :attr:`~creg.execution.runner.Runner.batch_size` (settable, so every worker batches alike);
* :meth:`~creg.execution.runner.Runner.process`: the loop over samples into a store, failures
  recorded, ``--max-failures`` enforced, optionally summarised;
* :meth:`~creg.execution.runner.Runner.write_summary`: ``summary.json`` and ``table.md`` from a store.

Executors: :class:`~creg.execution.backends.local.LocalExecutor` (this process) and
:class:`~creg.execution.backends.torchrun.TorchrunExecutor` (one rank of a ``torchrun`` launch);
:func:`creg.execution.backends.selection.executor_for` picks one. docs/architecture.md ("Execution
backends") says where a Ray- or HTTP-served backend would go.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Executor(Protocol):
    """Runs a Runner's samples somewhere and leaves the run directory one process would leave."""

    #: a short name for messages and docs (``local``, ``torchrun``).
    name: str

    def run(self, runner) -> object:
        """Run ``runner`` (a :class:`creg.execution.runner.Runner`); its :class:`~creg.execution.runner.RunResult`
        to print, or None where another process prints it (a rank other than 0).

        SIGTERM and Ctrl-C end the run with a valid partial run directory (``"complete": false``) that the
        same command continues, whichever executor runs it next."""
        ...
