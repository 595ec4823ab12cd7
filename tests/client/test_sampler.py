"""RemoteWeightedSampler in a real DataLoader against a real service gives the classic batches."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from sampleplan.client import NotFoundError, Plan, RemoteWeightedSampler, SamplePlanClient
from tests.helpers import reference
from tests.helpers.datasets import (
    PLAN_CONFIG,
    Items,
    classic_loader,
    classic_stream,
    imbalanced_labels,
    train_subset,
)


@pytest.fixture(scope="module")
def dataset() -> Items:
    return Items(imbalanced_labels())


@pytest.fixture
def plan(client: SamplePlanClient, dataset: Items) -> Plan:
    ds = client.create_dataset(dataset.targets)
    return client.create_plan(dataset_id=ds.id, **PLAN_CONFIG)


def _batches(loader: DataLoader[Any]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x, y) for x, y in loader]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_batches_equal_the_classic_recipe_epoch_by_epoch(
    client: SamplePlanClient, plan: Plan, dataset: Items, num_workers: int
) -> None:
    train = train_subset(dataset)
    # A chunk size that does not divide the epoch: batches straddle chunk boundaries.
    sampler = RemoteWeightedSampler(plan.id, client, chunk_size=37)
    loader = DataLoader(train, batch_size=16, sampler=sampler, num_workers=num_workers)
    assert len(sampler) == len(train) == plan.num_samples
    for epoch in range(3):
        sampler.set_epoch(epoch)
        got = _batches(loader)
        expected = _batches(classic_loader(dataset, epoch, batch_size=16))
        assert len(got) == len(expected) == -(-len(train) // 16)
        for (x, y), (ex, ey) in zip(got, expected, strict=True):
            assert torch.equal(x, ex) and torch.equal(y, ey)
    assert sampler.epoch == 2


@pytest.mark.parametrize("chunk_size", [1, 2, 64, 65536])
def test_any_chunk_size_gives_the_same_stream(
    client: SamplePlanClient, plan: Plan, dataset: Items, chunk_size: int
) -> None:
    sampler = RemoteWeightedSampler(plan, client, epoch=1, chunk_size=chunk_size)
    assert list(sampler) == classic_stream(dataset, epoch=1)


def test_space_dataset_yields_dataset_indices(
    client: SamplePlanClient, plan: Plan, dataset: Items
) -> None:
    train = train_subset(dataset)
    sampler = RemoteWeightedSampler(plan.id, client, space="dataset", chunk_size=50)
    assert list(sampler) == [train.indices[i] for i in classic_stream(dataset, epoch=0)]


def test_num_samples_and_explicit_sharding(client: SamplePlanClient, dataset: Items) -> None:
    plan = client.create_plan(labels=dataset.targets, **{**PLAN_CONFIG, "num_samples": 101})
    stream = classic_stream(dataset, epoch=4, num_samples=101)
    shards = []
    for rank in range(3):
        sampler = RemoteWeightedSampler(
            plan.id, client, epoch=4, rank=rank, world_size=3, chunk_size=8
        )
        assert len(sampler) == 34  # ceil(101 / 3)
        shards.append(list(sampler))
        assert shards[-1] == reference.distributed_shard(stream, rank, 3)
    # The padded epoch: 102 positions, the first one repeated at the end.
    assert sorted(i for shard in shards for i in shard) == sorted([*stream, stream[0]])


def test_rank_and_world_size_default_to_a_single_process(
    client: SamplePlanClient, plan: Plan
) -> None:
    assert not torch.distributed.is_initialized()
    sampler = RemoteWeightedSampler(plan.id, client)
    assert (sampler.rank, sampler.world_size) == (0, 1)


def test_stopping_early_leaves_no_thread_behind(client: SamplePlanClient, plan: Plan) -> None:
    sampler = RemoteWeightedSampler(plan.id, client, chunk_size=5)
    loader = DataLoader(list(range(plan.population_size)), batch_size=4, sampler=sampler)
    for i, _batch in enumerate(loader):
        if i == 2:
            break
    del loader, _batch
    deadline = time.monotonic() + 10
    while any(t.name == "sampleplan-prefetch" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a prefetch thread outlived its iterator"
        time.sleep(0.01)
    # A fresh iteration starts the epoch over, as DistributedSampler's does.
    assert list(sampler)[:12] == list(RemoteWeightedSampler(plan.id, client))[:12]


def test_an_unknown_plan_is_refused_at_construction(client: SamplePlanClient) -> None:
    with pytest.raises(NotFoundError):
        RemoteWeightedSampler("f" * 64, client)


def test_fallback_false_writes_nothing(
    client: SamplePlanClient, plan: Plan, private_cache: Path
) -> None:
    RemoteWeightedSampler(plan.id, client, fallback=False)
    assert not private_cache.exists()
    RemoteWeightedSampler(plan.id, client)
    assert (private_cache / "plans" / plan.id / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_size": 0}, "chunk_size should be a positive integer value, but got chunk_size=0"),
        (
            {"chunk_size": 2.5},
            "chunk_size should be a positive integer value, but got chunk_size=2.5",
        ),
        ({"epoch": -1}, "epoch should be a non-negative integer value, but got epoch=-1"),
        ({"world_size": 0}, "world_size should be a positive integer value, but got world_size=0"),
        ({"rank": 2, "world_size": 2}, r"Invalid rank 2, rank should be in the interval \[0, 1\]"),
        (
            {"rank": -1, "world_size": 2},
            "rank should be a non-negative integer value, but got rank=-1",
        ),
        ({"space": "rows"}, "space should be 'population' or 'dataset', but got space='rows'"),
    ],
)
def test_bad_arguments_are_refused_torch_style(
    client: SamplePlanClient, plan: Plan, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RemoteWeightedSampler(plan.id, client, **kwargs)


def test_set_epoch_is_validated(client: SamplePlanClient, plan: Plan) -> None:
    sampler = RemoteWeightedSampler(plan.id, client)
    with pytest.raises(ValueError, match="epoch should be a non-negative integer value"):
        sampler.set_epoch(-3)


def test_chunks_grow_from_chunk_size_to_max_chunk_size(
    client: SamplePlanClient, plan: Plan, dataset: Items, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small first request for a quick first batch, then doubling: few requests per epoch."""
    limits: list[int] = []
    original = client.indices

    def indices(plan_id: str, **page: Any) -> Any:
        limits.append(page["limit"])
        return original(plan_id, **page)

    monkeypatch.setattr(client, "indices", indices)
    sampler = RemoteWeightedSampler(plan.id, client, chunk_size=5, max_chunk_size=40)
    assert list(sampler) == classic_stream(dataset, 0)
    assert limits[:4] == [5, 10, 20, 40]
    assert set(limits[4:]) <= {40}
    assert sum(limits[:-1]) < len(sampler) <= sum(limits)
