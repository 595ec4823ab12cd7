"""A small imbalanced dataset and the classic recipe's loader over it, for the client tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset, WeightedRandomSampler, random_split

from tests.helpers import reference

SPLIT_SEED = 42
PLAN_SEED = 7


def imbalanced_labels(counts: Sequence[int] = (300, 90, 25), seed: int = 0) -> list[int]:
    """Labels with the given class counts, in a fixed shuffled order."""
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    return [labels[i] for i in order]


class Items(Dataset[tuple[torch.Tensor, int]]):
    """Item ``i`` is ``(tensor([i, label]), label)``: a batch shows which samples it holds."""

    def __init__(self, labels: Sequence[int]) -> None:
        self.targets = list(labels)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.tensor([i, self.targets[i]]), self.targets[i]


def train_subset(dataset: Items) -> Subset[tuple[torch.Tensor, int]]:
    """The 70 % training part, as users split it."""
    return random_split(dataset, [0.7, 0.3], generator=torch.Generator().manual_seed(SPLIT_SEED))[0]


def classic_weights(dataset: Items, train: Subset[Any]) -> list[float]:
    """The classic recipe's weights: ``1 / count`` of each training sample's class."""
    return reference.inverse_frequency([dataset.targets[i] for i in train.indices])


def classic_loader(
    dataset: Items, epoch: int, batch_size: int, num_samples: int | None = None
) -> DataLoader[Any]:
    """What users write today: WeightedRandomSampler seeded ``seed + epoch``."""
    train = train_subset(dataset)
    weights = classic_weights(dataset, train)
    sampler = WeightedRandomSampler(
        torch.tensor(weights, dtype=torch.float64),
        num_samples if num_samples is not None else len(weights),
        replacement=True,
        generator=torch.Generator().manual_seed(PLAN_SEED + epoch),
    )
    return DataLoader(train, batch_size=batch_size, sampler=sampler)


def classic_stream(dataset: Items, epoch: int, num_samples: int | None = None) -> list[int]:
    """The classic recipe's epoch stream (positions in the training subset)."""
    train = train_subset(dataset)
    weights = classic_weights(dataset, train)
    n = num_samples if num_samples is not None else len(weights)
    return reference.weighted_stream(weights, n, True, PLAN_SEED + epoch)


PLAN_CONFIG: dict[str, Any] = {
    "strategy": "inverse_frequency",
    "split": {"fractions": [0.7, 0.3], "seed": SPLIT_SEED},
    "seed": PLAN_SEED,
}


class Positions(Dataset[torch.Tensor]):
    """Item ``i`` is ``tensor([i])``: a batch shows which samples it holds."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([float(i)])
