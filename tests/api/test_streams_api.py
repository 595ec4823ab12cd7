"""Streams served over HTTP equal torch's own samplers."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import Dataset, WeightedRandomSampler, random_split

from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from tests.helpers import reference


class FakeImageFolder(Dataset[tuple[torch.Tensor, int]]):
    """An ImageFolder's indexing without images: classes are sorted folder names."""

    def __init__(self, files: list[str]) -> None:
        self.classes = sorted({f.split("/")[0] for f in files})
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        # ImageFolder walks classes in sorted order and files sorted within each.
        self.samples = sorted(
            ((f, self.class_to_idx[f.split("/")[0]]) for f in files), key=lambda s: (s[1], s[0])
        )
        self.targets = [t for _, t in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.zeros(3, 4, 4), self.targets[i]


def test_classic_recipe_end_to_end(module_api: TestClient) -> None:
    files = (
        [f"cat/{i:04d}.png" for i in range(400)]
        + [f"dog/{i:04d}.png" for i in range(150)]
        + [f"emu/{i:04d}.png" for i in range(42)]
    )
    dataset = FakeImageFolder(files)
    train, _val = random_split(dataset, [0.7, 0.3], generator=torch.Generator().manual_seed(42))
    # The classic recipe, as users write it today.
    train_targets = [dataset.targets[i] for i in train.indices]
    class_count = Counter(train_targets)
    sample_weights = [1.0 / class_count[t] for t in train_targets]

    ds = module_api.post("/v1/datasets", json={"labels": dataset.targets})
    assert ds.status_code in (200, 201)
    plan = module_api.post(
        "/v1/plans",
        json={
            "dataset_id": ds.json()["id"],
            "split": {"fractions": [0.7, 0.3], "seed": 42},
            "seed": 0,
        },
    )
    assert plan.status_code in (200, 201), plan.text
    body = plan.json()
    assert body["population_size"] == len(train) == 415  # floor(414.4) + the remainder
    assert body["num_samples"] == len(train)
    assert [row["count"] for row in body["classes"]] == [class_count[c] for c in range(3)]

    weights = module_api.get(f"/v1/plans/{body['id']}/weights").json()["weights"]
    assert weights == sample_weights
    for epoch in range(3):
        sampler = WeightedRandomSampler(
            sample_weights, len(sample_weights), generator=torch.Generator().manual_seed(0 + epoch)
        )
        served = module_api.get(f"/v1/plans/{body['id']}/indices", params={"epoch": epoch}).json()
        assert served["indices"] == list(sampler)
        in_dataset = module_api.get(
            f"/v1/plans/{body['id']}/indices", params={"epoch": epoch, "space": "dataset"}
        ).json()["indices"]
        assert in_dataset == [train.indices[i] for i in served["indices"]]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    labels=st.lists(st.sampled_from(["a", "b", "c", "zebra"]), min_size=2, max_size=80),
    seed=st.integers(0, 2**32 - 1),
    epoch=st.integers(0, 3),
    world_size=st.integers(1, 4),
    data=st.data(),
)
def test_http_pages_equal_local_samplers(
    module_api: TestClient,
    labels: list[str],
    seed: int,
    epoch: int,
    world_size: int,
    data: st.DataObject,
) -> None:
    rank = data.draw(st.integers(0, world_size - 1))
    split = data.draw(st.sampled_from([None, [0.7, 0.3], [0.5, 0.5]]))
    split_seed = data.draw(st.integers(0, 2**32 - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pop = reference.population(len(labels), split, split_seed)
    body: dict[str, Any] = {"labels": labels, "seed": seed}
    if split is not None:
        body["split"] = {"fractions": split, "seed": split_seed}
    created = module_api.post("/v1/plans", json=body)
    assert created.status_code in (200, 201), created.text
    plan_id = created.json()["id"]

    targets = [labels[i] for i in pop]
    stream = reference.weighted_stream(
        reference.inverse_frequency(targets), len(pop), True, seed + epoch
    )
    shard = reference.distributed_shard(stream, rank, world_size)
    offset = data.draw(st.integers(0, len(shard)))
    limit = data.draw(st.one_of(st.none(), st.integers(0, len(shard) + 2)))
    params: dict[str, Any] = {
        "epoch": epoch,
        "rank": rank,
        "world_size": world_size,
        "offset": offset,
    }
    if limit is not None:
        params["limit"] = limit
    page = module_api.get(f"/v1/plans/{plan_id}/indices", params=params)
    assert page.status_code == 200
    assert page.json()["indices"] == shard[offset : None if limit is None else offset + limit]
    assert page.json()["length"] == len(shard)


def test_sample_endpoint_matches_torch(module_api: TestClient) -> None:
    labels = [0, 0, 0, 0, 1, 1, 2] * 5
    r = module_api.post(
        "/v1/sample", json={"labels": labels, "seed": 11, "epoch": 2, "world_size": 3, "rank": 2}
    )
    assert r.status_code == 200
    body = r.json()
    weights = reference.inverse_frequency(labels)
    stream = reference.weighted_stream(weights, len(labels), True, 13)
    assert body["counts"] == [20, 10, 5]
    assert body["weights"] == weights
    assert body["indices"] == reference.distributed_shard(stream, 2, 3)


def test_without_replacement_over_http(module_api: TestClient) -> None:
    labels = list(np.random.default_rng(0).integers(0, 3, 50))
    r = module_api.post(
        "/v1/plans",
        json={
            "labels": [int(x) for x in labels],
            "replacement": False,
            "num_samples": 20,
            "seed": 3,
        },
    )
    assert r.status_code in (200, 201), r.text
    served = module_api.get(f"/v1/plans/{r.json()['id']}/indices", params={"epoch": 1}).json()[
        "indices"
    ]
    expected = reference.weighted_stream(
        reference.inverse_frequency([int(x) for x in labels]), 20, False, 4
    )
    assert served == expected
    assert len(set(served)) == 20


def test_plans_are_idempotent(api: TestClient) -> None:
    body = {"labels": ["x", "y", "y"], "seed": 1}
    first = api.post("/v1/plans", json=body)
    second = api.post("/v1/plans", json=body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json() == second.json()
    # The same config spelled differently (defaults written out) is the same plan.
    explicit = api.post(
        "/v1/plans",
        json={
            **body,
            "strategy": "inverse_frequency",
            "num_samples": 3,
            "replacement": True,
            "algorithm": "torch",
        },
    )
    assert explicit.status_code == 200
    assert explicit.json()["id"] == first.json()["id"]
    ds = api.post("/v1/datasets", json={"labels": ["x", "y", "y"]})
    assert ds.status_code == 200 and ds.json()["id"] == first.json()["dataset_id"]


def test_restart_on_the_same_sqlite_file_serves_identical_streams(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'restart.sqlite3'}")
    labels = [int(x) for x in np.random.default_rng(1).integers(0, 5, 300)]
    params = {"epoch": 4, "rank": 1, "world_size": 3}
    with TestClient(create_app(settings)) as client:
        plan = client.post(
            "/v1/plans", json={"labels": labels, "split": {"lengths": [200, 100], "seed": 7}}
        )
        assert plan.status_code == 201
        before = client.get(f"/v1/plans/{plan.json()['id']}/indices", params=params).json()
        weights_before = client.get(f"/v1/plans/{plan.json()['id']}/weights").json()
    with TestClient(create_app(settings)) as client:
        again = client.get(f"/v1/plans/{plan.json()['id']}")
        assert again.json() == plan.json()
        assert client.get(f"/v1/plans/{plan.json()['id']}/indices", params=params).json() == before
        assert client.get(f"/v1/plans/{plan.json()['id']}/weights").json() == weights_before


def test_hierarchical_plans_page_anywhere(module_api: TestClient) -> None:
    labels = [0] * 90 + [1] * 9 + [2]
    r = module_api.post(
        "/v1/plans",
        json={"labels": labels, "algorithm": "hierarchical", "num_samples": 10**12, "seed": 4},
    )
    assert r.status_code in (200, 201), r.text
    plan = r.json()
    assert plan["versions"]["algorithm_version"] == "hierarchical-v1"
    deep = {"epoch": 2, "rank": 1, "world_size": 2, "offset": 10**11, "limit": 1000}
    page = module_api.get(f"/v1/plans/{plan['id']}/indices", params=deep).json()
    assert page["length"] == 5 * 10**11
    assert len(page["indices"]) == 1000
    # Two half pages are the page, and pages repeat exactly.
    first = module_api.get(f"/v1/plans/{plan['id']}/indices", params={**deep, "limit": 500}).json()
    second = module_api.get(
        f"/v1/plans/{plan['id']}/indices", params={**deep, "offset": 10**11 + 500, "limit": 500}
    ).json()
    assert first["indices"] + second["indices"] == page["indices"]
