"""A remote sampler's rank and world size: given, or ``torch.distributed``'s when used.

Both samplers read ``torch.distributed`` when they need the ranks (``len()``, ``iter()``),
not when they are built: a sampler made before ``init_process_group`` (or pickled into
spawned processes) deals to the group it runs in.
"""

from __future__ import annotations

import sys
from types import FrameType

import torch

from sampleplan.client._arguments import check_int

__all__ = ["distributed_world", "refuse_resharding"]


def distributed_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``rank`` and ``world_size``, each ``torch.distributed``'s when not given."""
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    if world_size is None:
        world_size = torch.distributed.get_world_size() if initialised else 1
    if rank is None:
        rank = torch.distributed.get_rank() if initialised else 0
    check_int("world_size", world_size, minimum=1, what="positive")
    check_int("rank", rank, minimum=0, what="non-negative")
    if rank >= world_size:
        raise ValueError(
            f"Invalid rank {rank}, rank should be in the interval [0, {world_size - 1}]"
        )
    return rank, world_size


# NOTE [Samplers that others re-shard]
#     Hugging Face Accelerate's ``prepare()`` deals the batches of every process's loader
#     round-robin over the processes itself (``BatchSamplerShard``), whatever the sampler.
#     A sampler that also shards by the process group would hand each process a quarter of
#     the epoch, silently. Accelerate gives the sampler no sign of it but the call: so when
#     the world size comes from the process group, the first frames above ``iter()`` are
#     checked for Accelerate's batch sampler (a few frames, once per epoch), and the user
#     is told to pass ``world_size=1`` (every process draws the whole epoch, Accelerate
#     deals it).
_RESHARDERS = (("accelerate.data_loader", "BatchSamplerShard"),)


def refuse_resharding(world_size: int) -> None:
    """Raise when ``iter()`` was called by a batch sampler that re-shards (called from
    ``__iter__``: the frames above it are its caller's)."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(8):
        if frame is None:
            return
        owner = frame.f_locals.get("self")
        kind = type(owner)
        if (kind.__module__, kind.__name__) in _RESHARDERS:
            raise RuntimeError(
                f"{kind.__module__}.{kind.__name__} deals this loader's batches over the "
                f"{world_size} processes itself, and this sampler shards by the process group "
                "too: each process would get a fraction of its shard. Build the sampler with "
                "world_size=1, rank=0: every process draws the whole epoch and Accelerate "
                "deals it"
            )
        frame = frame.f_back
