"""AsyncSamplePlanClient against the real service answers what the sync client answers."""

from __future__ import annotations

import numpy as np
import pytest

from client import AsyncSamplePlanClient, NotFoundError, SamplePlanClient
from tests.client.data import PLAN_CONFIG, imbalanced_labels
from tests.conftest import LiveServer


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
