"""Data-parallel runs over several processes, GPUs or machines (``torchrun``; docs/distributed.md)."""

from creg.execution.backends.torchrun import RankFailed, run, run_data_parallel
from creg.execution.backends.world import Messages, World, shard, world_from_env

__all__ = ["run", "run_data_parallel", "RankFailed", "World", "world_from_env", "shard", "Messages"]
