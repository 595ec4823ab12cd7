"""Runs from the client: the sampler in a real DataLoader, updating weights across epochs."""

from __future__ import annotations

import pickle
import uuid
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from sampleplan.client import (
    AsyncSamplePlanClient,
    ClientRequestError,
    RemoteWeightedSampler,
    SamplePlanClient,
)
from tests.helpers import reference

LABELS = [0] * 60 + [1] * 12 + [2] * 24
BATCH = 8


def _loss(indices: torch.Tensor) -> torch.Tensor:
    """A stand-in for per-sample losses: a fixed function of the index."""
    return (indices % 7).to(torch.float64) + 0.5


def _train(
    sampler: RemoteWeightedSampler, epochs: range, stop_after: int | None = None
) -> list[int]:
    data = TensorDataset(torch.arange(len(LABELS)))
    loader = DataLoader(data, batch_size=BATCH, sampler=sampler)
    seen: list[int] = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        for i, (batch,) in enumerate(loader):
            seen += batch.tolist()
            sampler.update_weights(batch, _loss(batch), op="ema", alpha=0.5)
            if stop_after is not None and epoch == epochs[-1] and i + 1 == stop_after:
                return seen
    sampler.flush_updates()
    return seen


def test_sampler_with_updates_across_three_epochs_equals_local_wrs(
    client: SamplePlanClient,
) -> None:
    plan = client.create_plan(labels=LABELS, seed=3)
    run = f"run-{uuid.uuid4().hex[:8]}"
    sampler = RemoteWeightedSampler(plan.id, client, run=run, update_batch_size=20, chunk_size=16)
    seen = _train(sampler, range(3))
    # Expected: local WRS each epoch, weights updated here from the rule written out.
    counts = Counter(LABELS)
    weights = [1.0 / counts[t] for t in LABELS]
    expected: list[int] = []
    for epoch in range(3):
        # The weights each epoch drew from, bit for bit.
        assert client.run_weights(run, epoch).tolist() == weights
        stream = reference.weighted_stream(weights, len(LABELS), True, 3 + epoch)
        expected += stream
        for i in stream:  # one rank: its updates apply in the order it sent them
            weights[i] = 0.5 * weights[i] + 0.5 * float(i % 7 + 0.5)
    assert seen == expected
    assert client.get_run(run).frozen_epochs == [0, 1, 2]


def test_resumed_mid_epoch_reproduces_the_uninterrupted_run(client: SamplePlanClient) -> None:
    plan = client.create_plan(labels=LABELS, seed=8)
    whole_run = f"whole-{uuid.uuid4().hex[:8]}"
    whole = _train(
        RemoteWeightedSampler(plan.id, client, run=whole_run, update_batch_size=20), range(3)
    )

    resumed_run = f"resumed-{uuid.uuid4().hex[:8]}"
    first = RemoteWeightedSampler(plan.id, client, run=resumed_run, update_batch_size=20)
    seen = _train(first, range(2), stop_after=5)  # preempted 5 batches into epoch 1
    state = first.state_dict()
    assert state["run"] == resumed_run
    second = RemoteWeightedSampler(plan.id, client, run=resumed_run, update_batch_size=20)
    second.load_state_dict(state)
    data = TensorDataset(torch.arange(len(LABELS)))
    for (batch,) in DataLoader(data, batch_size=BATCH, sampler=second):
        seen += batch.tolist()
        second.update_weights(batch, _loss(batch), op="ema", alpha=0.5)
    seen += _train(second, range(2, 3))
    assert seen == whole
    assert np.array_equal(client.run_weights(resumed_run, 2), client.run_weights(whole_run, 2))


def test_late_update_is_raised_at_the_next_set_epoch(client: SamplePlanClient) -> None:
    plan = client.create_plan(labels=LABELS)
    run = f"late-{uuid.uuid4().hex[:8]}"
    sampler = RemoteWeightedSampler(plan.id, client, run=run)
    list(sampler)
    client.run_weights(run, 1)  # someone froze epoch 1 already
    sampler.update_weights([0], [2.0])
    with pytest.raises(ClientRequestError) as refused:
        sampler.set_epoch(1)
    assert refused.value.status_code == 409


def test_dynamic_balance_length_follows_the_epoch(client: SamplePlanClient) -> None:
    plan = client.create_plan(labels=LABELS, schedule={"kind": "dynamic_balance", "lambda": 0.5})
    sampler = RemoteWeightedSampler(plan.id, client)
    counts = Counter(LABELS)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        quotas = [int((n / 12) ** (0.5**epoch) * 12) for n in counts.values()]
        assert len(sampler) == sum(quotas) == len(list(sampler))
        assert client.weights(plan.id, epoch=epoch).tolist() == [
            int((counts[t] / 12) ** (0.5**epoch) * 12) / counts[t] for t in LABELS
        ]


@pytest.mark.anyio
async def test_async_twins(module_server: object) -> None:
    url = module_server.url  # type: ignore[attr-defined]
    async with AsyncSamplePlanClient(url) as api:
        plan = await api.create_plan(labels=LABELS, seed=1)
        run = await api.create_run(f"async-{uuid.uuid4().hex[:8]}", plan.id)
        await api.update_weights(run.id, [0, 1], [5.0, 5.0], epoch=0, op="set")
        weights = await api.run_weights(run.id, 1)
        assert weights[:2].tolist() == [5.0, 5.0]
        page = await api.run_indices(run.id, epoch=1, limit=10)
        assert (
            page.tolist() == reference.weighted_stream(weights.tolist(), len(LABELS), True, 2)[:10]
        )
        assert (await api.get_run(run.id)).frozen_epochs == [1]


def test_a_pickled_sampler_does_not_send_buffered_updates_twice(
    client: SamplePlanClient,
) -> None:
    # ddp_spawn and deepcopy pickle the sampler: updates buffered before that must reach
    # the service once, whichever copy flushes (here both do).
    plan = client.create_plan(labels=[0, 0, 1, 1])
    run = f"run-{uuid.uuid4().hex[:8]}"
    sampler = RemoteWeightedSampler(plan.id, client, run=run)
    list(sampler)
    sampler.update_weights([0], [2.0], op="mul")
    copy = pickle.loads(pickle.dumps(sampler))
    copy.flush_updates()
    sampler.flush_updates()
    assert client.get_run(run).updates == 1
    assert client.run_weights(run, 1).tolist() == [1.0, 0.5, 0.5, 0.5]


def test_delete_run_from_the_client(client: SamplePlanClient) -> None:
    plan = client.create_plan(labels=LABELS, seed=3)
    run = f"run-{uuid.uuid4().hex[:8]}"
    client.create_run(run, plan.id)
    client.update_weights(run, [0], [2.0], epoch=0)
    assert client.delete_run(run) is True
    assert client.delete_run(run) is False  # no run has that id any more
    with pytest.raises(ClientRequestError) as gone:
        client.get_run(run)
    assert gone.value.status_code == 404


@pytest.mark.anyio
async def test_delete_run_from_the_async_client(module_server: object) -> None:
    url = module_server.url  # type: ignore[attr-defined]
    async with AsyncSamplePlanClient(url) as api:
        plan = await api.create_plan(labels=LABELS, seed=3)
        run = f"run-{uuid.uuid4().hex[:8]}"
        await api.create_run(run, plan.id)
        assert await api.delete_run(run) is True
        assert await api.delete_run(run) is False
        assert (await api.create_run(run, plan.id)).updates == 0  # the id is free again
