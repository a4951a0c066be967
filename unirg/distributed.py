"""Which process of a multi-process run this is, and waiting for the others: rank 0 owns the run folder.

A run is one process (`make rl`) or N torch.distributed processes (torchrun, or Ray-placed trainer
workers). Every process trains; only rank 0 writes the run folder, evaluates and prints.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def world_size() -> int:
    """Number of trainer processes in this run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 when the run is a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """True in the process that writes the run folder."""
    return rank() == 0


def ensure_process_group() -> None:
    """Join the run's process group when launched as several processes and nobody has yet.

    torchrun only sets RANK/WORLD_SIZE/MASTER_ADDR; the Trainer (through accelerate) creates the group
    later, but the pipeline must synchronise before that (rank 0 renders data and builds the model
    first). accelerate reuses a group that already exists.
    """
    import torch
    import torch.distributed as dist

    if world_size() > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def barrier() -> None:
    """Wait until every process gets here (no-op for a single process)."""
    import torch.distributed as dist

    if world_size() > 1:
        ensure_process_group()
        dist.barrier()


@contextmanager
def main_process_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the others: rank 0 writes what they then read."""
    if not is_main_process():
        barrier()
    yield
    if is_main_process():
        barrier()
