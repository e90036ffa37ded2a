"""Where a run's samples are explained: the :class:`~creg.execution.backends.base.Executor` seam, this process
(:mod:`~creg.execution.backends.local`) or a data-parallel ``torchrun`` launch over several processes, GPUs or
machines (:mod:`~creg.execution.backends.torchrun`, docs/distributed.md); :func:`executor_for` chooses."""

from creg.execution.backends.base import Executor
from creg.execution.backends.local import LocalExecutor
from creg.execution.backends.selection import executor_for
from creg.execution.backends.torchrun import RankFailed, TorchrunExecutor, run_data_parallel
from creg.execution.backends.world import Messages, World, shard, world_from_env

__all__ = ["Executor", "LocalExecutor", "TorchrunExecutor", "executor_for", "run_data_parallel", "RankFailed",
           "World", "world_from_env", "shard", "Messages"]
