"""Mid-epoch resumption: a restored job gets exactly the indices it had not consumed."""

from __future__ import annotations

import json
from itertools import islice
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from sampleplan.client import Plan, RemoteWeightedSampler, SamplePlanClient
from tests.helpers import reference
from tests.helpers.datasets import (
    PLAN_CONFIG,
    Items,
    classic_stream,
    imbalanced_labels,
    train_subset,
)

BATCH = 10


@pytest.fixture(scope="module")
def dataset() -> Items:
    return Items(imbalanced_labels())


@pytest.fixture
def plan(client: SamplePlanClient, dataset: Items) -> Plan:
    return client.create_plan(labels=dataset.targets, **PLAN_CONFIG)


def _positions(batches: list[Any], dataset: Items) -> list[int]:
    """Training-subset positions of the samples in ``batches`` (item = tensor([i, label]))."""
    train = train_subset(dataset)
    where = {index: position for position, index in enumerate(train.indices)}
    return [where[int(i)] for x, _y in batches for i in x[:, 0]]


@pytest.mark.parametrize("epoch", [0, 3])
def test_resume_by_hand_continues_with_the_rest_of_the_epoch(
    client: SamplePlanClient, plan: Plan, dataset: Items, epoch: int
) -> None:
    train = train_subset(dataset)
    sampler = RemoteWeightedSampler(plan.id, client, chunk_size=32)
    sampler.set_epoch(epoch)
    loader = DataLoader(train, batch_size=BATCH, sampler=sampler)
    consumed = list(islice(loader, 7))
    state = sampler.state_dict()
    assert state == {
        "plan_id": plan.id,
        "epoch": epoch,
        "position": 7 * BATCH,
        "world_size": 1,
        "start": 0,
        "global_position": 7 * BATCH,
    }

    # A new process: new client, new sampler, the state read back from a checkpoint.
    state = json.loads(json.dumps(state))
    with SamplePlanClient(client.base_url, retries=0) as api:
        restored = RemoteWeightedSampler(plan.id, api, chunk_size=32)
        restored.load_state_dict(state)
        restored.set_epoch(epoch)  # the training loop calls it again: same epoch, same position
        rest = list(DataLoader(train, batch_size=BATCH, sampler=restored))
        assert restored.state_dict()["position"] == len(restored)
        full = classic_stream(dataset, epoch)
        assert _positions(consumed, dataset) == full[: 7 * BATCH]
        assert _positions(rest, dataset) == full[7 * BATCH :]
        # Resumption applies once; the next iteration is a whole epoch again.
        assert list(restored) == full


def test_resume_at_a_chunk_boundary_and_at_the_end(
    client: SamplePlanClient, plan: Plan, dataset: Items
) -> None:
    full = classic_stream(dataset, 0)
    for position in (0, 32, 64, len(full) - 1, len(full)):
        sampler = RemoteWeightedSampler(plan.id, client, chunk_size=32)
        sampler.load_state_dict(
            {"plan_id": plan.id, "epoch": 0, "position": position, "world_size": 1}
        )
        assert sampler.state_dict()["position"] == position
        assert list(sampler) == full[position:]


def test_a_new_epoch_drops_a_pending_resume(
    client: SamplePlanClient, plan: Plan, dataset: Items
) -> None:
    sampler = RemoteWeightedSampler(plan.id, client)
    sampler.load_state_dict({"plan_id": plan.id, "epoch": 2, "position": 50, "world_size": 1})
    assert sampler.epoch == 2
    sampler.set_epoch(3)
    assert sampler.state_dict()["position"] == 0
    assert list(sampler) == classic_stream(dataset, 3)


def test_a_rank_resumes_from_rank_0s_checkpoint(
    client: SamplePlanClient, plan: Plan, dataset: Items
) -> None:
    rank0 = RemoteWeightedSampler(plan.id, client, rank=0, world_size=2, chunk_size=16)
    iterator = iter(rank0)
    for _ in range(40):
        next(iterator)
    state = rank0.state_dict()
    rank1 = RemoteWeightedSampler(plan.id, client, rank=1, world_size=2, chunk_size=16)
    rank1.load_state_dict(state)
    assert list(rank1) == reference.distributed_shard(classic_stream(dataset, 0), 1, 2)[40:]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"plan_id": "0" * 64}, "state_dict is for plan"),
        ({"world_size": 0}, "world_size should be a positive integer value"),
        ({"position": -1}, "position should be a non-negative integer value"),
        ({"position": 10_000}, r"position should be at most ceil\(\(num_samples - start\)"),
        ({"start": 10_000}, "start should be at most the epoch's"),
        ({"global_position": 10_000}, "global_position should be at most the epoch's"),
        ({"epoch": "1"}, "epoch should be a non-negative integer value"),
    ],
)
def test_bad_states_are_refused(
    client: SamplePlanClient, plan: Plan, change: dict[str, Any], message: str
) -> None:
    sampler = RemoteWeightedSampler(plan.id, client)
    with pytest.raises(ValueError, match=message):
        sampler.load_state_dict({**sampler.state_dict(), **change})
    with pytest.raises(ValueError, match="state_dict lacks position"):
        sampler.load_state_dict({"plan_id": plan.id, "epoch": 0, "world_size": 1})


# torchdata 0.11 calls a torch function that torch 2.13 deprecates; not ours to fix.
@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_through_torchdatas_stateful_dataloader(
    client: SamplePlanClient, plan: Plan, dataset: Items, num_workers: int
) -> None:
    stateful = pytest.importorskip("torchdata.stateful_dataloader")
    train = train_subset(dataset)

    def loader() -> Any:
        sampler = RemoteWeightedSampler(plan.id, client, epoch=1, chunk_size=24)
        return stateful.StatefulDataLoader(
            train, batch_size=BATCH, sampler=sampler, num_workers=num_workers
        )

    first = loader()
    iterator = iter(first)
    consumed = [next(iterator) for _ in range(5)]
    # The loader prefetches ahead with workers; its state is what was consumed.
    state = first.state_dict()
    del iterator

    second = loader()
    second.load_state_dict(state)
    rest = list(second)
    full = classic_stream(dataset, 1)
    assert _positions(consumed, dataset) == full[: 5 * BATCH]
    assert _positions(rest, dataset) == full[5 * BATCH :]
    # The epoch after the restored one is whole again.
    assert len(list(second)) == -(-len(full) // BATCH)
    assert torch.cat([x for x, _ in second])[:, 0].numel() == len(full)
