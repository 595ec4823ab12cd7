"""Mixture plans through the client: create and read them, draw them with
``RemoteWeightedSampler`` over ``ConcatDataset``, offline from the cache, after a restart,
and ``hf-interleave`` against Hugging Face ``datasets`` itself."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
from torch.utils.data import ConcatDataset, DataLoader

from sampleplan.client import (
    AsyncSamplePlanClient,
    Plan,
    RemoteBatchSampler,
    RemoteWeightedSampler,
    SamplePlanClient,
)
from sampleplan.core.streams import StreamRequest
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from tests.helpers.servers import LiveServer

LENGTHS = {"web": 60, "code": 23, "math": 7}


@pytest.fixture
def api(live_server: LiveServer) -> Iterator[SamplePlanClient]:
    with SamplePlanClient(live_server.url, retries=0, backoff=0.0, timeout=5.0) as client:
        yield client


def _datasets(api: SamplePlanClient, tokens: bool = False) -> dict[str, str]:
    """One stored dataset per source (labels differ, so ids do); token lengths if asked."""
    ids = {}
    for i, (name, n) in enumerate(LENGTHS.items()):
        labels = [(i + k) % 3 for k in range(n)]
        lengths = (np.arange(n) % 5 + 1) * (i + 1) if tokens else None
        ids[name] = api.create_dataset(labels, lengths=lengths).id
    return ids


def _items() -> ConcatDataset[str]:
    """The sources as ``ConcatDataset`` numbers them, each item naming its source and row."""
    return ConcatDataset([[f"{name}:{j}" for j in range(n)] for name, n in LENGTHS.items()])


def _mixture_plan(api: SamplePlanClient, **overrides: Any) -> Plan:
    ids = _datasets(api)
    request: dict[str, Any] = {
        "sources": [
            {"name": "web", "dataset_id": ids["web"], "weight": 5},
            {"name": "code", "dataset_id": ids["code"], "weight": 3, "order": {"shuffle_seed": 11}},
            {"name": "math", "dataset_id": ids["math"], "weight": 2, "order": "sequential"},
        ],
        "mixing": {"block": 10},
        "num_samples": 95,
        "seed": 4,
    }
    request.update(overrides)
    return api.create_plan(**request)


def test_a_mixture_plan_and_its_shares(api: SamplePlanClient) -> None:
    plan = _mixture_plan(api)
    assert plan.is_mixture and plan.dataset_id is None and plan.classes == []
    assert plan.population_size == sum(LENGTHS.values()) and plan.num_samples == 95
    assert plan.algorithm == "mixture-v1"
    assert plan.sources is not None
    assert [row.name for row in plan.sources] == list(LENGTHS)
    assert [row.offset for row in plan.sources] == [0, 60, 83]
    assert [row.requested_share for row in plan.sources] == pytest.approx([0.5, 0.3, 0.2])
    assert sum(row.samples for row in plan.sources) == 95
    # The counts are the stream's: read it and count by ConcatDataset's offsets.
    stream = api.indices(plan.id)
    counts = np.bincount(np.searchsorted([60, 83], stream, side="right"), minlength=3)
    assert [row.samples for row in plan.sources] == counts.tolist()
    math = plan.sources[2]
    assert math.passes == pytest.approx(math.samples / 7) and math.passes > 2
    assert api.get_plan(plan.id) == plan
    # The same request finds the same plan; the async twin too.
    assert _mixture_plan(api).id == plan.id

    async def twin() -> tuple[Plan, Plan]:
        async with AsyncSamplePlanClient(api.base_url) as client:
            # The canonical config, sent back, names the same plan.
            return await client.create_plan(**plan.config), await client.get_plan(plan.id)

    created, read = asyncio.run(twin())
    assert created == read == plan


def test_the_sampler_over_concat_dataset_is_the_plans_stream(api: SamplePlanClient) -> None:
    plan = _mixture_plan(api)
    data = _items()
    sampler = RemoteWeightedSampler(plan.id, api, chunk_size=7)
    sampler.set_epoch(2)
    seen = [x for batch in DataLoader(data, batch_size=8, sampler=sampler) for x in batch]
    assert seen == [data[i] for i in api.indices(plan.id, epoch=2).tolist()]
    with pytest.raises(ValueError, match="is a mixture of sources"):
        RemoteBatchSampler(plan.id, api)


def test_a_run_changes_the_sources_weights_from_the_next_epoch(api: SamplePlanClient) -> None:
    plan = _mixture_plan(api)  # weights 5, 3, 2
    data = _items()
    sampler = RemoteWeightedSampler(plan.id, api, run="mixing-job", chunk_size=16)
    loader = DataLoader(data, batch_size=5, sampler=sampler)
    # Unchanged weights draw the plan's stream.
    assert [x for batch in loader for x in batch] == [data[i] for i in api.indices(plan.id)]
    # Online data mixing: math is dropped and code doubled, from the next epoch on.
    sampler.update_weights([2, 1], [0.0, 2.0], op="mul")
    sampler.set_epoch(1)  # flushes the update
    assert api.run_weights("mixing-job", epoch=1).tolist() == [5.0, 6.0, 0.0]
    seen = [x for batch in loader for x in batch]
    assert seen == [data[i] for i in api.run_indices("mixing-job", epoch=1).tolist()]
    counts = {name: sum(x.startswith(f"{name}:") for x in seen) for name in LENGTHS}
    assert counts["math"] == 0 and sum(counts.values()) == 95
    # Proportions 5/11 and 6/11 hold within mixture-v1's bound.
    assert abs(counts["web"] - 95 * 5 / 11) <= 2 and abs(counts["code"] - 95 * 6 / 11) <= 2


@pytest.mark.parametrize("kind", ["plan source", "tokens"])
def test_offline_pages_are_the_services(
    live_server: LiveServer, api: SamplePlanClient, private_cache: Path, kind: str
) -> None:
    ids = _datasets(api, tokens=kind == "tokens")
    code: dict[str, Any] = {"name": "code", "dataset_id": ids["code"], "weight": 3}
    if kind == "plan source":
        # A plan as a source; its dataset is the same labels, without token lengths.
        labels = api.get_dataset(ids["code"])
        single = api.create_plan(
            dataset_id=labels.id, algorithm="hierarchical", num_samples=40, seed=2
        )
        code = {"name": "code", "plan_id": single.id, "weight": 3}
    plan = api.create_plan(
        sources=[
            {"name": "web", "dataset_id": ids["web"], "weight": 6},
            code,
            {"name": "math", "dataset_id": ids["math"], "weight": 1, "order": {"shuffle_seed": 3}},
        ],
        mixing={"unit": "tokens" if kind == "tokens" else "samples", "block": 16},
        num_samples=150,
        seed=9,
    )
    requests = [
        {"epoch": 0},
        {"epoch": 3, "rank": 1, "world_size": 3},
        {"epoch": 1, "rank": 0, "world_size": 2, "offset": 20, "limit": 30},
        {"epoch": 2, "rank": 2, "world_size": 4, "start": 33, "pad": False},
    ]
    online = [api.indices(plan.id, **r).tolist() for r in requests]
    expected = api.indices(plan.id, epoch=1, rank=1, world_size=2).tolist()
    sampler = RemoteWeightedSampler(plan.id, api, rank=1, world_size=2)  # caches the plan
    sampler.set_epoch(1)
    assert list(sampler) == expected
    live_server.stop()
    with SamplePlanClient(live_server.url, retries=0, timeout=2.0) as down:
        offline = RemoteWeightedSampler(plan.id, down, rank=1, world_size=2)
        offline.set_epoch(1)
        assert list(offline) == expected
    cached = RemoteWeightedSampler(plan.id, None)  # no client at all: the cache alone
    drawer = cached._source.offline(None)
    for request, page in zip(requests, online, strict=True):
        assert drawer.indices(StreamRequest(**request)).tolist() == page


def test_a_restarted_service_keeps_every_mixture(
    live_server: LiveServer, settings: Settings, api: SamplePlanClient
) -> None:
    plans = [
        _mixture_plan(api),
        _mixture_plan(api, mixing={"algorithm": "megatron-blend"}),
    ]
    ids = _datasets(api)
    plans.append(
        api.create_plan(
            sources=[{"name": name, "dataset_id": ids[name]} for name in LENGTHS],
            mixing={"proportions": {"temperature": 3.0}},
        )
    )
    pages = [api.indices(p.id, epoch=1, rank=1, world_size=2).tolist() for p in plans]
    live_server.stop()
    with (
        LiveServer(create_app(settings)) as again,
        SamplePlanClient(again.url, retries=0) as other,
    ):
        for plan, page in zip(plans, pages, strict=True):
            assert other.get_plan(plan.id).raw == plan.raw
            assert other.indices(plan.id, epoch=1, rank=1, world_size=2).tolist() == page


@pytest.mark.parametrize("stopping", ["first_exhausted", "all_exhausted"])
def test_hf_interleave_through_the_client_is_interleave_datasets(
    api: SamplePlanClient, stopping: str
) -> None:
    ids = _datasets(api)
    probabilities = {"web": 0.5, "code": 0.3, "math": 0.2}
    shuffles = {"web": None, "code": 11, "math": 5}
    plan = api.create_plan(
        sources=[
            {
                "name": name,
                "dataset_id": ids[name],
                "weight": probabilities[name],
                "order": "sequential"
                if shuffles[name] is None
                else {"shuffle_seed": shuffles[name]},
            }
            for name in LENGTHS
        ],
        mixing={"algorithm": "hf-interleave", "stopping": stopping},
        seed=42,
    )
    data = _items()
    sampler = RemoteWeightedSampler(plan.id, api, chunk_size=16)
    for epoch in (0, 1):
        parts = []
        for name, n in LENGTHS.items():
            part = datasets.Dataset.from_dict({"x": [f"{name}:{j}" for j in range(n)]})
            parts.append(part if shuffles[name] is None else part.shuffle(seed=shuffles[name]))
        mixed = datasets.interleave_datasets(
            parts,
            probabilities=list(probabilities.values()),
            seed=42 + epoch,
            stopping_strategy=stopping,
        )
        sampler.set_epoch(epoch)
        assert len(sampler) == len(mixed)
        assert [data[i] for i in sampler] == list(mixed["x"])
        # From the cache alone (each epoch's length computed here), and through a pickle.
        cached = RemoteWeightedSampler(plan.id, None, epoch=epoch)
        assert len(cached) == len(mixed)
        assert [data[i] for i in pickle.loads(pickle.dumps(cached))] == list(mixed["x"])
