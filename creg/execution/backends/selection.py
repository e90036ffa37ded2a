"""Which executor runs a run: the one place ``creg run`` and ``creg.run`` choose between one process and a
``torchrun`` rank."""

from __future__ import annotations

from creg.execution.backends.base import Executor
from creg.execution.backends.local import LocalExecutor
from creg.execution.backends.torchrun import TorchrunExecutor
from creg.execution.backends.world import World


def executor_for(world: World | None) -> Executor:
    """This process alone (``world`` None, :func:`creg.execution.backends.world.world_from_env` outside
    ``torchrun``), or its rank of a data-parallel launch."""
    return LocalExecutor() if world is None else TorchrunExecutor(world)
