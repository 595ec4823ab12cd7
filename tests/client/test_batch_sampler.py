"""``RemoteBatchSampler`` in a ``DataLoader``: batches, epochs, resumption, pickling, offline."""

from __future__ import annotations

import json
import logging
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sampleplan.client import (
    CacheError,
    Plan,
    RemoteBatchSampler,
    RemoteWeightedSampler,
    SamplePlanClient,
    StreamMismatchError,
    TransportError,
)
from tests.helpers.datasets import Items, imbalanced_labels, train_subset
from tests.helpers.ranks import spawn
from tests.helpers.ranks.batch_rank import BATCH_EPOCHS, batch_rank_main
from tests.helpers.servers import LiveServer, free_port

BATCHING = {"kind": "m_per_class", "m": 4, "batch_size": 12}
QUOTA = {"kind": "class_quota", "quota": {"0": 3, "1": 3, "2": 2}}


@pytest.fixture(scope="module")
def dataset() -> Items:
    return Items(imbalanced_labels(counts=(60, 25, 14, 9, 30)))


@pytest.fixture
def plan(client: SamplePlanClient, dataset: Items) -> Plan:
    return client.create_plan(
        labels=dataset.targets,
        batching=BATCHING,
        num_batches=23,
        split={"fractions": [0.7, 0.3], "seed": 42},
        seed=7,
    )


def _rows(loader: Any) -> list[list[int]]:
    """Population positions of each batch a loader gives (Items carry their index)."""
    return [x[:, 0].tolist() for x, _ in loader]


def _positions(rows: list[list[int]], dataset: Items) -> list[list[int]]:
    """Dataset indices back to training-subset positions."""
    train = train_subset(dataset)
    where = {index: position for position, index in enumerate(train.indices)}
    return [[where[i] for i in row] for row in rows]


def test_a_loader_gets_the_plans_batches(
    client: SamplePlanClient, plan: Plan, dataset: Items
) -> None:
    sampler = RemoteBatchSampler(plan.id, client, chunk_size=30)
    assert len(sampler) == 23 and sampler.batch_size == 12
    loader = DataLoader(train_subset(dataset), batch_sampler=sampler)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        rows = _positions(_rows(loader), dataset)
        assert rows == client.batches(plan.id, epoch=epoch).tolist()
        for row in _rows(loader):
            per_class = Counter(dataset.targets[i] for i in row)
            assert len(per_class) == 3 and set(per_class.values()) == {4}
    assert list(sampler) == client.batches(plan.id, epoch=1).tolist()


def test_class_quota_batches_through_the_json_path(
    client: SamplePlanClient, dataset: Items
) -> None:
    plan = client.create_plan(labels=dataset.targets, batching=QUOTA, seed=1)
    assert (
        client.batches(plan.id, epoch=3, binary=False).tolist()
        == client.batches(plan.id, epoch=3).tolist()
    )
    for row in RemoteBatchSampler(plan.id, client, epoch=3, space="dataset"):
        assert Counter(dataset.targets[i] for i in row) == {0: 3, 1: 3, 2: 2}
    summary = client.batches_summary(plan.id, epoch=3)
    assert summary["num_batches"] == len(dataset.targets) // 8


def test_state_dict_resumes_mid_epoch(client: SamplePlanClient, plan: Plan) -> None:
    first = RemoteBatchSampler(plan.id, client, epoch=2, chunk_size=24)
    iterator = iter(first)
    consumed = [next(iterator) for _ in range(9)]
    state = first.state_dict()
    assert state == {"plan_id": plan.id, "epoch": 2, "position": 9, "world_size": 1}
    second = RemoteBatchSampler(plan.id, client)
    second.load_state_dict(state)
    full = client.batches(plan.id, epoch=2).tolist()
    assert consumed + list(second) == full
    assert list(second) == full  # the next epoch-pass is whole again
    with pytest.raises(ValueError, match="state_dict is for plan"):
        second.load_state_dict({**state, "plan_id": "0" * 64})
    with pytest.raises(ValueError, match=r"position should be at most len\(sampler\)=23"):
        second.load_state_dict({**state, "position": 24})


# torchdata 0.11 calls a torch function that torch 2.13 deprecates; not ours to fix.
@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_through_torchdatas_stateful_dataloader(
    client: SamplePlanClient, plan: Plan, dataset: Items, num_workers: int
) -> None:
    stateful = pytest.importorskip("torchdata.stateful_dataloader")
    train = train_subset(dataset)

    def loader() -> Any:
        sampler = RemoteBatchSampler(plan.id, client, epoch=1, chunk_size=36)
        return stateful.StatefulDataLoader(train, batch_sampler=sampler, num_workers=num_workers)

    first = loader()
    iterator = iter(first)
    consumed = [next(iterator) for _ in range(5)]
    state = first.state_dict()  # what was delivered, whatever the workers prefetched
    del iterator
    second = loader()
    second.load_state_dict(state)
    rest = list(second)
    full = client.batches(plan.id, epoch=1).tolist()
    assert _positions(_rows(consumed), dataset) == full[:5]
    assert _positions(_rows(rest), dataset) == full[5:]
    assert len(list(second)) == 23


def test_pickled_samplers_rebuild_their_client(
    client: SamplePlanClient, plan: Plan, module_server: LiveServer
) -> None:
    with SamplePlanClient(module_server.url, token="secret", retries=2) as own:
        sampler = RemoteBatchSampler(plan.id, own, epoch=4, rank=1, world_size=2)
        next(iter(sampler))
        copy = pickle.loads(pickle.dumps(sampler))
    assert copy.api is not None and copy.api is not own
    assert copy.api._headers == {"Authorization": "Bearer secret"}
    assert copy.api.retries == 2
    try:
        assert list(copy) == client.batches(plan.id, epoch=4, rank=1, world_size=2).tolist()
    finally:
        copy.api.close()
    with httpx.Client() as http:
        injected = SamplePlanClient(module_server.url, http_client=http)
        with pytest.raises(TypeError, match="caller's http_client cannot be pickled"):
            pickle.dumps(RemoteBatchSampler(plan.id, injected))


def test_offline_the_cache_gives_the_same_batches(
    client: SamplePlanClient, plan: Plan, private_cache: Path
) -> None:
    RemoteBatchSampler(plan.id, client)  # caches the plan and its dataset's class codes
    expected = client.batches(plan.id, epoch=6, rank=0, world_size=3, space="dataset").tolist()
    cached_only = RemoteBatchSampler(plan.id, None, epoch=6, rank=0, world_size=3, space="dataset")
    assert list(cached_only) == expected
    with SamplePlanClient(f"http://127.0.0.1:{free_port()}", retries=0, timeout=2.0) as gone:
        unreachable = RemoteBatchSampler(
            plan.id, gone, epoch=6, rank=0, world_size=3, space="dataset"
        )
        assert list(unreachable) == expected
    # A cached copy that says another definition made the batches is refused.
    path = private_cache / "plans" / plan.id / "plan.json"
    data = json.loads(path.read_text())
    data["versions"]["batches"] = "batches-v0"
    path.write_text(json.dumps(data))
    with pytest.raises(StreamMismatchError, match="batches-v0"):
        RemoteBatchSampler(plan.id, None)


def test_offline_batches_v2_over_a_stratified_v2_split_are_the_services(
    client: SamplePlanClient, dataset: Items, private_cache: Path
) -> None:
    plan = client.create_plan(
        labels=dataset.targets,
        batching=BATCHING,
        split={"fractions": [0.7, 0.3], "seed": 42, "stratify": True},
        seed=7,
        definitions={"batches": "batches-v2", "stratify": "stratified-v2"},
    )
    assert plan.versions["batches"] == "batches-v2"
    assert plan.versions["stratify"] == "stratified-v2"
    RemoteBatchSampler(plan.id, client)  # caches the plan and its dataset's class codes
    expected = client.batches(plan.id, epoch=3, rank=1, world_size=2, space="dataset").tolist()
    cached_only = RemoteBatchSampler(plan.id, None, epoch=3, rank=1, world_size=2, space="dataset")
    assert list(cached_only) == expected


def test_an_entry_cached_without_class_codes_is_completed(
    client: SamplePlanClient, plan: Plan, private_cache: Path
) -> None:
    # A weighted sampler caches what its stream needs: no class codes for this plan.
    RemoteWeightedSampler(plan.id, client)
    assert not (private_cache / "plans" / plan.id / "codes.npy").exists()
    RemoteBatchSampler(plan.id, client)  # the batches depend on the classes
    assert (private_cache / "plans" / plan.id / "codes.npy").exists()
    cached_only = RemoteBatchSampler(plan.id, None, epoch=2)
    assert list(cached_only) == client.batches(plan.id, epoch=2).tolist()


def test_unreachable_and_not_cached(plan: Plan, caplog: pytest.LogCaptureFixture) -> None:
    with (
        SamplePlanClient(f"http://127.0.0.1:{free_port()}", retries=0, timeout=2.0) as gone,
        caplog.at_level(logging.WARNING, logger="sampleplan.client"),
        pytest.raises(
            CacheError, match=r"no offline fallback: plan \w+ is not in the cache"
        ) as info,
    ):
        RemoteBatchSampler(plan.id, gone)
    assert isinstance(info.value.__cause__, TransportError)
    # No "using the cached copy" before a "not in the cache".
    assert "cached copy" not in caplog.text


def test_service_stopped_mid_epoch_the_batches_finish_from_the_cache(
    live_server: LiveServer, dataset: Items, caplog: pytest.LogCaptureFixture
) -> None:
    with SamplePlanClient(live_server.url, retries=1, backoff=0.0, timeout=5.0) as api:
        plan = api.create_plan(labels=dataset.targets, batching=QUOTA, num_batches=40, seed=2)
        expected = {e: api.batches(plan.id, epoch=e).tolist() for e in (0, 1)}
        sampler = RemoteBatchSampler(plan.id, api, chunk_size=16)  # two batches a chunk
        iterator = iter(sampler)
        before = [next(iterator) for _ in range(5)]
        live_server.stop()
        with caplog.at_level(logging.WARNING, logger="sampleplan.client"):
            after = list(iterator)
        assert before + after == expected[0]
        assert "drawing the rest of epoch 0" in caplog.text
        # Later epochs, and a resumed one, come from the cache too.
        sampler.set_epoch(1)
        assert list(sampler) == expected[1]
        sampler.load_state_dict({**sampler.state_dict(), "position": 30})
        assert list(sampler) == expected[1][30:]


def test_bad_arguments(client: SamplePlanClient, plan: Plan, dataset: Items) -> None:
    plain = client.create_plan(labels=dataset.targets)
    with pytest.raises(ValueError, match="has no 'batching'"):
        RemoteBatchSampler(plain.id, client)
    with pytest.raises(ValueError, match="Invalid rank 2"):
        RemoteBatchSampler(plan.id, client, rank=2, world_size=2)
    with pytest.raises(ValueError, match="epoch should be a non-negative integer value"):
        RemoteBatchSampler(plan.id, client, epoch=-1)
    with pytest.raises(ValueError, match="space should be"):
        RemoteBatchSampler(plan.id, client, space="train")  # type: ignore[arg-type]


@pytest.mark.slow  # starts processes: `make test-quick` leaves it out
def test_two_gloo_ranks_share_the_epochs_batches(
    live_server: LiveServer, tmp_path: Path, private_cache: Path
) -> None:
    dataset = Items(imbalanced_labels(counts=(60, 25, 14, 9, 30)))
    with SamplePlanClient(live_server.url) as api:
        plan = api.create_plan(labels=dataset.targets, batching=BATCHING, num_batches=11)
        epochs = {e: api.batches(plan.id, epoch=e).tolist() for e in BATCH_EPOCHS}
    spawn(
        batch_rank_main,
        args=(live_server.url, plan.id, free_port(), str(tmp_path), str(private_cache)),
        nprocs=2,
    )
    for epoch in BATCH_EPOCHS:
        shards = [
            json.loads((tmp_path / f"rank{r}.json").read_text())[str(epoch)] for r in range(2)
        ]
        assert [len(s) for s in shards] == [6, 6]
        padded = epochs[epoch] + epochs[epoch][:1]
        assert shards[0] == padded[0::2] and shards[1] == padded[1::2]
        assert np.asarray(shards).shape == (2, 6, 12)
        assert torch.tensor(shards).numel() == 144
