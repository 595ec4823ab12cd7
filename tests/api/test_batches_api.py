"""``GET /v1/plans/{id}/batches`` and ``/batches/summary``: formats, pages, ranks, bad input."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sampleplan.service.config import Settings
from sampleplan.service.main import create_app

LABELS = ["cat"] * 40 + ["dog"] * 13 + ["emu"] * 7 + ["fox"] * 22 + ["gnu"] * 3
M_PER_CLASS = {"kind": "m_per_class", "m": 2, "batch_size": 6}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("db") / "batches.sqlite3"
    settings = Settings(database_url=f"sqlite:///{db}", max_page=600)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def plan(api: TestClient) -> dict[str, Any]:
    response = api.post(
        "/v1/plans",
        json={
            "labels": LABELS,
            "batching": M_PER_CLASS,
            "num_batches": 50,
            "split": {"fractions": [0.8, 0.2], "seed": 1},
            "seed": 3,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _batches(api: TestClient, plan_id: str, **params: Any) -> np.ndarray:
    response = api.get(f"/v1/plans/{plan_id}/batches", params=params)
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["batches"], dtype=np.int64).reshape(-1, 6)


def test_a_batch_plan_names_its_batching_and_version(plan: dict[str, Any]) -> None:
    assert plan["config"]["batching"] == M_PER_CLASS
    assert plan["config"]["num_batches"] == 50
    assert plan["versions"]["batches"] == "batches-v1"


def test_default_num_batches(api: TestClient) -> None:
    response = api.post("/v1/plans", json={"labels": LABELS, "batching": M_PER_CLASS})
    assert response.json()["config"]["num_batches"] == len(LABELS) // 6


def test_json_binary_and_npy_agree(api: TestClient, plan: dict[str, Any]) -> None:
    url = f"/v1/plans/{plan['id']}/batches"
    params = {"epoch": 2, "offset": 3, "limit": 10}
    as_json = api.get(url, params=params)
    body = as_json.json()
    assert (body["length"], body["batch_size"], body["offset"]) == (50, 6, 3)
    rows = np.asarray(body["batches"], dtype=np.int64)
    assert rows.shape == (10, 6)
    raw = api.get(url, params=params, headers={"Accept": "application/octet-stream"})
    assert raw.headers["x-sampleplan-shape"] == "10,6"
    assert raw.headers["x-sampleplan-length"] == "60"
    assert (np.frombuffer(raw.content, dtype="<i8").reshape(10, 6) == rows).all()
    npy = api.get(url, params=params, headers={"Accept": "application/x-npy"})
    assert (np.load(io.BytesIO(npy.content), allow_pickle=False) == rows).all()
    head = api.head(url, params=params, headers={"Accept": "application/octet-stream"})
    assert head.status_code == 200 and head.headers["content-length"] == str(60 * 8)


def test_every_batch_meets_the_contract_and_pages_join_up(
    api: TestClient, plan: dict[str, Any]
) -> None:
    whole = _batches(api, plan["id"], epoch=1)
    assert whole.shape == (50, 6)
    codes = _batches(api, plan["id"], epoch=1, space="dataset")
    for batch in codes:
        per_class = Counter(LABELS[i] for i in batch)
        assert len(per_class) == 3 and set(per_class.values()) == {2}
    pieces = [_batches(api, plan["id"], epoch=1, offset=o, limit=7) for o in range(0, 50, 7)]
    assert (np.concatenate(pieces) == whole).all()
    assert (_batches(api, plan["id"], epoch=1, offset=42, limit=1)[0] == whole[42]).all()
    assert _batches(api, plan["id"], epoch=1, offset=50).shape == (0, 6)
    assert not (_batches(api, plan["id"], epoch=2) == whole).all()


def test_ranks_take_whole_batches(api: TestClient, plan: dict[str, Any]) -> None:
    whole = _batches(api, plan["id"], epoch=0)
    shards = [_batches(api, plan["id"], epoch=0, rank=r, world_size=3) for r in range(3)]
    assert [s.shape[0] for s in shards] == [17, 17, 17]
    padded = np.concatenate([whole, whole[:1]])
    for rank, shard in enumerate(shards):
        assert (shard == padded[rank::3]).all()
    halves = [_batches(api, plan["id"], epoch=0, rank=r, world_size=2) for r in range(2)]
    together = sorted(map(tuple, np.concatenate(halves).tolist()))
    assert together == sorted(map(tuple, whole.tolist()))


def test_summary_counts_and_digest(api: TestClient, plan: dict[str, Any]) -> None:
    for space in ("population", "dataset"):
        params = {"epoch": 4, "rank": 1, "world_size": 2, "space": space}
        summary = api.get(f"/v1/plans/{plan['id']}/batches/summary", params=params).json()
        batches = _batches(api, plan["id"], **params)
        assert summary["num_batches"] == 25 and summary["batch_size"] == 6
        expected = hashlib.sha256(np.ascontiguousarray(batches, dtype="<i8").tobytes())
        assert summary["sha256"] == expected.hexdigest()
        dataset = _batches(api, plan["id"], **{**params, "space": "dataset"})
        counts = Counter(LABELS[i] for i in dataset.reshape(-1))
        assert summary["counts"] == [counts[c] for c in summary["classes"]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"batching": {"kind": "m_per_class", "m": 4, "batch_size": 30}}, "m must divide"),
        ({"batching": {"kind": "m_per_class", "m": 2, "batch_size": 12}}, "need 6 classes"),
        ({"batching": {"kind": "class_quota", "quota": {"owl": 2}}}, "does not have: 'owl'"),
        ({"batching": {"kind": "class_quota", "quota": {"cat": 0}}}, "at least one sample"),
        ({"batching": {"kind": "class_quota", "quota": {"cat": -2}}}, "non-negative"),
        ({"batching": {"kind": "class_quota", "quota": {"cat": 1.5}}}, "non-negative"),
        ({"batching": {"kind": "stratified"}}, "kind should be"),
        ({"batching": "m_per_class"}, ""),
        ({"batching": {"kind": "class_quota", "quota": {"cat": 1}}, "num_batches": 0}, "positive"),
        ({"num_batches": 5}, "only applies to plans with 'batching'"),
        (
            {"batching": {"kind": "class_quota", "quota": {"cat": 1}}, "replacement": False},
            "replacement",
        ),
    ],
)
def test_bad_batching_is_a_422_problem(api: TestClient, body: dict[str, Any], message: str) -> None:
    response = api.post("/v1/plans", json={"labels": LABELS, **body})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert message in response.json()["detail"]


def test_bad_batch_requests(api: TestClient, plan: dict[str, Any]) -> None:
    plain = api.post("/v1/plans", json={"labels": LABELS}).json()
    long = api.post(
        "/v1/plans", json={"labels": LABELS, "batching": M_PER_CLASS, "num_batches": 200}
    ).json()
    url = f"/v1/plans/{long['id']}/batches"
    cases = [
        (f"/v1/plans/{plain['id']}/batches", {}, 422, "has no 'batching'"),
        (f"/v1/plans/{plain['id']}/batches/summary", {}, 422, "has no 'batching'"),
        (f"/v1/plans/{'0' * 64}/batches", {}, 404, "no plan has id"),
        (url, {"rank": 2, "world_size": 2}, 422, "rank should be in [0, world_size)"),
        (url, {"limit": 101}, 422, "at most 600"),  # 101 batches of 6 > max_page
        (url, {"offset": -1}, 422, ""),
        (url, {"epoch": "x"}, 422, ""),
    ]
    for path, params, status, message in cases:
        response = api.get(path, params=params)
        assert response.status_code == status, (path, params, response.text)
        assert message in response.json()["detail"]
    assert api.get(url, params={"limit": 100}).status_code == 200


def test_stored_batch_plans_read_back_the_same(tmp_path: Path) -> None:
    """A restarted service (no cached prepared plan) serves the same batches."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    body = {"labels": LABELS, "batching": {"kind": "class_quota", "quota": {"cat": 2, "gnu": 1}}}
    with TestClient(create_app(settings)) as first:
        plan_id = first.post("/v1/plans", json=body).json()["id"]
        before = first.get(f"/v1/plans/{plan_id}/batches", params={"epoch": 5}).json()
    with TestClient(create_app(settings)) as second:
        assert second.post("/v1/plans", json=body).status_code == 200
        after = second.get(f"/v1/plans/{plan_id}/batches", params={"epoch": 5}).json()
    assert before == after


def test_long_json_pages_stream_row_by_row(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    body = {
        "labels": LABELS,
        "batching": {"kind": "class_quota", "quota": {"cat": 128, "dog": 128}},
        "num_batches": 300,
    }
    with TestClient(create_app(settings)) as api:
        plan_id = api.post("/v1/plans", json=body).json()["id"]
        url = f"/v1/plans/{plan_id}/batches"
        rows = api.get(url).json()["batches"]  # 76800 values: over one JSON chunk
        raw = api.get(url, headers={"Accept": "application/octet-stream"}).content
    assert np.asarray(rows).shape == (300, 256)
    assert (np.frombuffer(raw, dtype="<i8").reshape(300, 256) == np.asarray(rows)).all()
