"""``GET /v1/datasets/{id}/codes``: every sample's class index, in the three array formats."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sampleplan.service.api.arrays import NPY, OCTET_STREAM
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app

MAX_PAGE = 500
LABELS = ["b", "a", "c", "a", "c", "c", "b"] * 20


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db: Path = tmp_path_factory.mktemp("codes") / "codes.sqlite3"
    with TestClient(create_app(Settings(database_url=f"sqlite:///{db}", max_page=MAX_PAGE))) as c:
        yield c


@pytest.fixture(scope="module")
def dataset(client: TestClient) -> dict[str, object]:
    created = client.post("/v1/datasets", json={"labels": LABELS})
    assert created.status_code in (200, 201)
    data: dict[str, object] = created.json()
    return data


def test_the_three_media_types_give_the_class_of_every_sample(
    client: TestClient, dataset: dict[str, object]
) -> None:
    path = f"/v1/datasets/{dataset['id']}/codes"
    expected = [["a", "b", "c"].index(label) for label in LABELS]
    assert dataset["classes"] == ["a", "b", "c"]
    as_json = client.get(path)
    assert as_json.status_code == 200
    assert as_json.json() == {"dataset_id": dataset["id"], "length": len(LABELS), "codes": expected}
    raw = client.get(path, headers={"accept": OCTET_STREAM})
    assert raw.headers["content-type"] == OCTET_STREAM
    assert raw.headers["x-sampleplan-dtype"] == "<i8"
    assert np.frombuffer(raw.content, "<i8").tolist() == expected
    npy = client.get(path, headers={"accept": NPY})
    assert npy.headers["content-type"] == NPY
    loaded = np.load(io.BytesIO(npy.content), allow_pickle=False)
    assert loaded.dtype == np.dtype("<i8") and loaded.tolist() == expected
    head = client.head(path, headers={"accept": OCTET_STREAM})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == raw.headers["content-length"]


def test_bad_input_is_a_problem(client: TestClient, dataset: dict[str, object]) -> None:
    missing = client.get(f"/v1/datasets/{'0' * 64}/codes", headers={"accept": OCTET_STREAM})
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    refused = client.get(f"/v1/datasets/{dataset['id']}/codes", headers={"accept": "text/html"})
    assert refused.status_code == 406
    assert refused.headers["content-type"] == "application/problem+json"
    big = client.post("/v1/datasets", json={"labels": [0, 1] * MAX_PAGE}).json()["id"]
    for accept in (None, OCTET_STREAM, NPY):
        response = client.get(
            f"/v1/datasets/{big}/codes", headers={"accept": accept} if accept else {}
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert f"at most {MAX_PAGE}" in response.json()["detail"]


def test_the_operation_is_documented_once(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/datasets/{dataset_id}/codes"]
    assert set(operation) == {"get", "head"}  # HEAD: its own operation, without a body
    ok = operation["get"]["responses"]["200"]
    assert set(ok["content"]) == {"application/json", OCTET_STREAM, NPY}
    assert {"404", "406", "422"} <= set(operation["get"]["responses"])
