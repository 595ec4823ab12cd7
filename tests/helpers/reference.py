"""The classic recipe, written with torch only: the oracle every stream is checked against.

Nothing here imports sampleplan. It is the dozen lines users write today.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch
from torch.utils.data import DistributedSampler, WeightedRandomSampler, random_split


def population(n: int, split: Sequence[float] | Sequence[int] | None, split_seed: int) -> list[int]:
    """Dataset indices of the training part of ``random_split`` (or all of them)."""
    if split is None:
        return list(range(n))
    train = random_split(
        range(n), list(split), generator=torch.Generator().manual_seed(split_seed)
    )[0]
    return list(train.indices)


def inverse_frequency(targets: Sequence[object]) -> list[float]:
    counts = Counter(targets)
    return [1.0 / counts[t] for t in targets]


def inverse_sqrt_frequency(targets: Sequence[object]) -> list[float]:
    counts = Counter(targets)
    return [1.0 / math.sqrt(counts[t]) for t in targets]


def weighted_stream(
    weights: Sequence[float], num_samples: int, replacement: bool, seed: int
) -> list[int]:
    """``list(WeightedRandomSampler(...))`` with a float64 weight tensor and a seeded generator."""
    sampler = WeightedRandomSampler(
        torch.tensor(list(weights), dtype=torch.float64),
        num_samples,
        replacement=replacement,
        generator=torch.Generator().manual_seed(seed),
    )
    return list(sampler)


def distributed_shard(stream: Sequence[int], rank: int, world_size: int) -> list[int]:
    """The rank's share of ``stream`` as ``DistributedSampler(drop_last=False)`` deals it."""
    sampler = DistributedSampler(
        list(stream), num_replicas=world_size, rank=rank, shuffle=False, drop_last=False
    )
    return [stream[i] for i in sampler]
