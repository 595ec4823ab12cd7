"""The guide's "Differences from torch" (docs/reference/streams.md): each input torch takes
and the service refuses on purpose, checked against torch itself (what it does) and the
service (a clear 422)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from torch.utils.data import WeightedRandomSampler, random_split


def _torch_stream(weights: list[float], n: int, replacement: bool, seed: int) -> list[int]:
    sampler = WeightedRandomSampler(
        torch.tensor(weights, dtype=torch.float64),
        n,
        replacement=replacement,
        generator=torch.Generator().manual_seed(seed),
    )
    return list(sampler)


def _refused(api: TestClient, body: dict[str, Any], words: str) -> None:
    response = api.post("/v1/sample", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"]


def test_overdrawing_zero_weights_without_replacement(api: TestClient) -> None:
    # torch draws a sample of weight zero rather than fail.
    drawn = _torch_stream([1.0, 0.0, 0.0], 2, replacement=False, seed=0)
    assert len(drawn) == 2 and any(i != 0 for i in drawn)
    body = {
        "labels": [0, 1, 2],
        "strategy": "sample_weights",
        "weights": [1.0, 0.0, 0.0],
        "num_samples": 2,
        "replacement": False,
    }
    _refused(api, body, "only 1 of the population's 3 samples have a positive weight")


def test_weights_whose_sum_overflows(api: TestClient) -> None:
    weights = [1e308, 1e308]
    assert torch.tensor(weights, dtype=torch.float64).sum().isinf()
    assert len(_torch_stream(weights, 4, replacement=True, seed=0)) == 4  # torch draws anyway
    body = {"labels": [0, 1], "strategy": "sample_weights", "weights": weights, "num_samples": 4}
    _refused(api, body, "more than float64 can hold")


def test_seeds_from_two_to_the_32(api: TestClient) -> None:
    # torch keeps the low 32 bits: 2**32 is seed 0.
    assert _torch_stream([1.0, 2.0, 3.0], 8, True, 2**32) == _torch_stream(
        [1.0, 2.0, 3.0], 8, True, 0
    )
    _refused(api, {"labels": [0, 1, 2], "seed": 2**32}, "seed should be in [0, 2**32)")


@pytest.mark.parametrize("split", [{"fractions": [1.0]}, {"lengths": [5]}])
def test_a_one_part_split(api: TestClient, split: dict[str, Any]) -> None:
    parts = split.get("fractions") or split["lengths"]
    assert [len(p) for p in random_split(range(5), parts)] == [5]  # torch takes it
    _refused(api, {"labels": [0, 0, 1, 1, 2], "split": {**split, "seed": 0}}, "at least two parts")


def test_weights_stay_float64(api: TestClient) -> None:
    # torch.tensor of Python floats is float32: WeightedRandomSampler casts it to float64
    # after the values were rounded. The service keeps the float64 values it was sent.
    weights = [1.0 / 3.0, 1.0 / 7.0, 0.1, 0.9, 0.55] * 40
    assert torch.tensor(weights).double().tolist() != weights
    body = {
        "labels": list(range(len(weights))),
        "strategy": "sample_weights",
        "weights": weights,
        "num_samples": 200,
    }
    response = api.post("/v1/sample", json=body)
    assert response.status_code == 200
    assert response.json()["weights"] == weights
    assert response.json()["indices"] == _torch_stream(weights, 200, True, 0)


@pytest.mark.parametrize("labels", [[0.0, 1.0], [True, False], [0, "a"]])
def test_labels_that_are_not_all_ints_or_all_strings(api: TestClient, labels: list[Any]) -> None:
    _refused(api, {"labels": labels}, "labels must be all integers or all strings")


def test_an_empty_split_part_is_accepted_as_torch_accepts_it(api: TestClient) -> None:
    assert [len(p) for p in random_split(range(3), [3, 0])] == [3, 0]
    response = api.post("/v1/sample", json={"labels": [0, 0, 1], "split": {"lengths": [3, 0]}})
    assert response.status_code == 200
    assert response.json()["plan"]["population_size"] == 3
