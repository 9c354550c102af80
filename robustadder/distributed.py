"""Scale-out with torch.distributed: shard each cell's batches across ranks launched by torchrun.

``torchrun --nproc-per-node K -m robustadder eval ...`` (or ``sweep``) starts K processes; each one
computes the batches ``b`` of every cell with ``b % world_size == rank`` and writes its own rows to the
shared SQLite store, one transaction per batch. Batches are fixed by the cell's configuration (order,
batch size), and random attacks draw per-sample noise, so the rows are exactly those a single process
would write. Rank 0 creates (or, with ``--force``, resets) each cell before the others start on it, and
marks it done once every rank has finished its share. A rank that dies leaves only whole batches;
rerunning the job (torchrun's restarts, or the user) computes only what is missing — no row is lost or
duplicated (the store's (cell, sample) key refuses duplicates).

Process groups: gloo on CPU, NCCL on GPU with one device per rank (``cuda:LOCAL_RANK``). Without
torchrun (no ``WORLD_SIZE`` in the environment) everything runs in one process, unchanged. All ranks
must reach the same store file: one node, or a shared filesystem with working POSIX locks for several.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistContext:
    """Where the current process stands in the job: rank, world size, local rank."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world_size

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.active:
            torch.distributed.barrier()

    def device(self, requested: str) -> str:
        """One GPU per rank: ``cuda`` becomes ``cuda:LOCAL_RANK``."""
        if self.active and requested == "cuda":
            return f"cuda:{self.local_rank}"
        return requested


_CONTEXT: DistContext | None = None


def init(device: str = "cpu") -> DistContext:
    """Join the torchrun job if there is one (idempotent); returns the context."""
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        _CONTEXT = DistContext()
        return _CONTEXT
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    gpu = device.startswith("cuda")
    if gpu:
        torch.cuda.set_device(local)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if gpu else "gloo")
    _CONTEXT = DistContext(rank, world, local)
    return _CONTEXT


def context() -> DistContext:
    """The current context (single process unless :func:`init` joined a job)."""
    return _CONTEXT or DistContext()


def shutdown() -> None:
    """Leave the process group (end of a command)."""
    global _CONTEXT
    if _CONTEXT is not None and _CONTEXT.active and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    _CONTEXT = None
