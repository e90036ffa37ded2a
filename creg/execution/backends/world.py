"""Which process of a data-parallel run this is, and the few messages the processes exchange.

``torchrun`` (and Slurm through it, docs/distributed.md) starts one process per rank with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in the
environment; :func:`world_from_env` reads them. The processes exchange only small Python
objects (the finished sample ids, each rank's outcome) over a gloo process group, whatever
the device: replicas never exchange tensors, so no NCCL group is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping, Sequence, TypeVar

T = TypeVar("T")

#: How long a rank waits for the others at a synchronisation point (they meet at the start and
#: at the end of the run, so this bounds how unequal the ranks' shares of work may be).
#: ``CREG_DIST_TIMEOUT_MIN`` overrides it.
DEFAULT_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` processes, ``local_rank`` on its machine."""

    rank: int
    size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_from_env(environ: Mapping[str, str] | None = None) -> World | None:
    """The :class:`World` that ``torchrun`` describes in the environment, or None for a single process."""
    env = os.environ if environ is None else environ
    try:
        size = int(env.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={env.get('WORLD_SIZE')!r} is not a number") from None
    if size <= 1:
        return None
    try:
        rank = int(env["RANK"])
        local_rank = int(env.get("LOCAL_RANK", env["RANK"]))
    except (KeyError, ValueError):
        raise ValueError("WORLD_SIZE > 1 but RANK / LOCAL_RANK are missing or not numbers: start the run with torchrun") from None
    if not 0 <= rank < size:
        raise ValueError(f"RANK={rank} is outside 0..{size - 1}")
    return World(rank=rank, size=size, local_rank=local_rank)


def shard(items: Sequence[T], rank: int, size: int) -> list[T]:
    """Rank ``rank``'s share of ``items``: every ``size``-th item from position ``rank``
    (deterministic; shares differ in length by at most one; lm-eval's split)."""
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} outside 0..{size - 1}")
    return list(items[rank::size])


class Messages:
    """Small-object collectives between the ranks (gloo). Opens the process group from the
    environment (``env://``) unless one is open already; :meth:`close` ends what it opened."""

    def __init__(self, world: World):
        import torch.distributed as dist  # lazy: torch

        self.world = world
        self._dist = dist
        self._owns = False
        # Modules whose functions take ``group=group.WORLD`` as a default argument keep the group
        # alive past destroy_process_group when they are first imported after it opened (model
        # code imports torch.distributed.nn): the group's threads then die in interpreter shutdown,
        # which can abort a finished rank. Imported now, their defaults hold None.
        import torch.distributed.nn  # noqa: F401  # lazy: torch

        if not dist.is_initialized():
            minutes = os.environ.get("CREG_DIST_TIMEOUT_MIN")
            timeout = timedelta(minutes=float(minutes)) if minutes else DEFAULT_TIMEOUT
            dist.init_process_group("gloo", rank=world.rank, world_size=world.size, timeout=timeout)
            self._owns = True
            self._group = None
        else:
            # an existing (e.g. NCCL) group: object collectives go through a gloo group of our own
            self._group = dist.new_group(backend="gloo")

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """``obj`` of rank ``src``, on every rank."""
        box = [obj if self.world.rank == src else None]
        self._dist.broadcast_object_list(box, src=src, group=self._group)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, by rank, on every rank."""
        out: list[Any] = [None] * self.world.size
        self._dist.all_gather_object(out, obj, group=self._group)
        return out

    def close(self) -> None:
        if self._owns and self._dist.is_initialized():
            self._dist.destroy_process_group()
            self._owns = False
