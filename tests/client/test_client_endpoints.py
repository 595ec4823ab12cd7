"""SamplePlanClient against a real service on loopback."""

from __future__ import annotations

import numpy as np
import pytest

from sampleplan.client import (
    ClientRequestError,
    NotFoundError,
    SamplePlanClient,
    SamplePlanError,
    TransportError,
)
from tests.helpers import reference
from tests.helpers.servers import LiveServer, free_port


def test_endpoints_return_typed_objects_and_arrays(live_server: LiveServer) -> None:
    labels = ["cat"] * 30 + ["dog"] * 9 + ["emu"] * 2
    with SamplePlanClient(live_server.url) as api:
        ds = api.create_dataset(labels)
        assert (ds.size, ds.classes, ds.counts) == (41, ["cat", "dog", "emu"], [30, 9, 2])
        assert api.get_dataset(ds.id) == ds
        assert api.create_dataset(np.array(labels)).id == ds.id

        plan = api.create_plan(dataset_id=ds.id, seed=5, split={"fractions": [0.8, 0.2], "seed": 1})
        assert api.get_plan(plan.id) == plan
        assert plan.versions["algorithm_version"] == "torch-multinomial-v1"
        assert [row.label for row in plan.classes] == ["cat", "dog", "emu"]

        weights = api.weights(plan.id)
        assert weights.dtype == np.float64 and weights.shape == (plan.population_size,)
        pop = reference.population(len(labels), [0.8, 0.2], 1)
        assert weights.tolist() == reference.inverse_frequency([labels[i] for i in pop])

        stream = reference.weighted_stream(weights.tolist(), plan.num_samples, True, 5 + 2)
        got = api.indices(plan.id, epoch=2, rank=1, world_size=3, offset=2, limit=5)
        assert got.dtype == np.int64
        assert got.tolist() == reference.distributed_shard(stream, 1, 3)[2:7]
        in_dataset = api.indices(plan.id, epoch=2, space="dataset")
        assert in_dataset.tolist() == [pop[i] for i in stream]

        one_shot = api.sample(labels, seed=5, epoch=2)
        assert one_shot["indices"] == reference.weighted_stream(
            reference.inverse_frequency(labels), len(labels), True, 7
        )
        assert api.health()


def test_errors_map_onto_the_exception_tree(live_server: LiveServer) -> None:
    with SamplePlanClient(live_server.url, retries=0) as api:
        with pytest.raises(NotFoundError) as missing:
            api.get_plan("0" * 64)
        assert missing.value.status_code == 404
        assert "no plan has id" in missing.value.detail
        with pytest.raises(ClientRequestError) as bad:
            api.create_plan(labels=[0, 1], seed=-1)
        assert bad.value.status_code == 422
        assert bad.value.problem["type"].endswith("invalid-plan-config")
        assert isinstance(bad.value, SamplePlanError)


def test_unreachable_service_is_a_transport_error() -> None:
    with SamplePlanClient(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01) as api:
        with pytest.raises(TransportError, match="cannot reach"):
            api.get_plan("x")
        assert not api.health()
