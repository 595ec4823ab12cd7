"""Hostile input over HTTP (issue 22): integers past Python's 4300-digit limit are a 422,
never a 500; the docs' static assets open with tokens set."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

#: Where each body below holds "@", an integer of 5000 digits.
BIG = "1" * 5000


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/v1/datasets", '{"labels": [@]}', "application/json"),
        ("/v1/plans", '{"labels": [@]}', "application/json"),
        ("/v1/plans", '{"labels": [0, 1], "seed": @}', "application/json"),
        ("/v1/plans", '{"labels": [0, 1], "weights": [@, 1]}', "application/json"),
        ("/v1/plans", '{"labels": [0, 1], "num_samples": @}', "application/json"),
        ("/v1/datasets", "label\n@\n", "text/csv"),
        ("/v1/datasets", '{"label": @}\n', "application/x-ndjson"),
        (
            "/v1/runs/big/updates",
            '{"epoch": 0, "op": "set", "indices": [@], "values": [1]}',
            "application/json",
        ),
        (
            "/v1/runs/big/updates",
            '{"epoch": 0, "op": "set", "indices": [1], "values": [@]}',
            "application/json",
        ),
        (
            "/v1/runs/big/updates",
            '{"epoch": @, "op": "set", "indices": [1], "values": [1]}',
            "application/json",
        ),
        (
            "/v1/runs/big/updates",
            '{"epoch": 0, "step": @, "op": "mul", "indices": [1], "values": [1]}',
            "application/json",
        ),
    ],
)
def test_an_integer_of_4301_digits_is_a_422(
    module_api: TestClient, path: str, body: str, content_type: str
) -> None:
    plan = module_api.post("/v1/plans", json={"labels": [0, 1, 1]}).json()["id"]
    module_api.put("/v1/runs/big", json={"plan_id": plan})
    response = module_api.post(
        path, content=body.replace("@", BIG), headers={"Content-Type": content_type}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "int" in response.json()["detail"]
