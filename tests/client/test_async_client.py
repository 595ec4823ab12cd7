"""AsyncSamplePlanClient against the real service answers what the sync client answers."""

from __future__ import annotations

import numpy as np
import pytest

from sampleplan.client import AsyncSamplePlanClient, NotFoundError, SamplePlanClient
from tests.helpers.datasets import PLAN_CONFIG, imbalanced_labels
from tests.helpers.servers import LiveServer


@pytest.mark.anyio
async def test_async_client_matches_the_sync_client(
    module_server: LiveServer, client: SamplePlanClient
) -> None:
    labels = imbalanced_labels(counts=(40, 12, 3))
    async with AsyncSamplePlanClient(module_server.url, retries=0) as api:
        assert await api.health()
        ds = await api.create_dataset(labels)
        assert ds == client.create_dataset(labels)
        assert (await api.get_dataset(ds.id)).counts == [40, 12, 3]
        plan = await api.create_plan(dataset_id=ds.id, **PLAN_CONFIG)
        assert plan == client.get_plan(plan.id) == await api.get_plan(plan.id)
        np.testing.assert_array_equal(await api.weights(plan.id), client.weights(plan.id))
        page = await api.indices(
            plan.id, epoch=2, rank=1, world_size=2, offset=3, limit=9, space="dataset"
        )
        expected = client.indices(
            plan.id, epoch=2, rank=1, world_size=2, offset=3, limit=9, space="dataset"
        )
        assert page.dtype == np.int64 and page.tolist() == expected.tolist() and len(page) == 9
        sample = await api.sample(labels, seed=1)
        assert sample == client.sample(labels, seed=1)
        with pytest.raises(NotFoundError):
            await api.get_plan("0" * 64)


@pytest.mark.anyio
async def test_async_batches_match_the_sync_client(
    module_server: LiveServer, client: SamplePlanClient
) -> None:
    labels = imbalanced_labels(counts=(40, 12, 9, 7))
    plan = client.create_plan(
        labels=labels, batching={"kind": "m_per_class", "m": 2, "batch_size": 6}, num_batches=9
    )
    async with AsyncSamplePlanClient(module_server.url, retries=0) as api:
        for binary in (True, False):
            page = await api.batches(
                plan.id, epoch=1, rank=1, world_size=2, offset=1, limit=3, binary=binary
            )
            expected = client.batches(plan.id, epoch=1, rank=1, world_size=2, offset=1, limit=3)
            assert page.shape == (3, 6) and page.tolist() == expected.tolist()
        empty = await api.batches(plan.id, offset=9)
        assert empty.shape == (0, 6)
        summary = await api.batches_summary(plan.id, epoch=1)
        assert summary == client.batches_summary(plan.id, epoch=1)
        assert sum(summary["counts"]) == 9 * 6
