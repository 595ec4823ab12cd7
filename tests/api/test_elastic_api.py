"""``start``, ``pad`` and ``drop_last`` on ``/indices`` and its summary, against torch."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.helpers import reference

LABELS = [0] * 30 + [1] * 7 + [2] * 3


@pytest.fixture(scope="module")
def plan_id(module_api: TestClient) -> str:
    response = module_api.post("/v1/plans", json={"labels": LABELS, "seed": 9})
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


def _stream(epoch: int) -> list[int]:
    return reference.weighted_stream(reference.inverse_frequency(LABELS), 40, True, 9 + epoch)


@pytest.mark.parametrize("binary", [False, True])
def test_a_resumed_deal_over_three_ranks(
    module_api: TestClient, plan_id: str, binary: bool
) -> None:
    stream = _stream(2)
    rest = stream[17:]
    for rank in range(3):
        params = {"epoch": 2, "rank": rank, "world_size": 3, "start": 17}
        headers = {"Accept": "application/octet-stream"} if binary else {}
        response = module_api.get(f"/v1/plans/{plan_id}/indices", params=params, headers=headers)
        assert response.status_code == 200, response.text
        got = (
            np.frombuffer(response.content, dtype="<i8").tolist()
            if binary
            else response.json()["indices"]
        )
        assert got == reference.distributed_shard(rest, rank, 3)
        assert response.headers["X-Sampleplan-Stream-Length"] == "8"


def test_unpadded_and_dropped_tails(module_api: TestClient, plan_id: str) -> None:
    stream = _stream(0)
    url = f"/v1/plans/{plan_id}/indices"
    unpadded = [
        module_api.get(url, params={"rank": r, "world_size": 3, "pad": "false"}).json()
        for r in range(3)
    ]
    assert [body["indices"] for body in unpadded] == [stream[r::3] for r in range(3)]
    assert [body["length"] for body in unpadded] == [14, 13, 13]
    assert unpadded[0]["pad"] is False and unpadded[0]["start"] == 0
    dropped = module_api.get(url, params={"rank": 2, "world_size": 3, "drop_last": "true"}).json()
    assert dropped["indices"] == stream[2:39:3] and dropped["length"] == 13
    # A page of a resumed, unpadded deal.
    page = module_api.get(
        url,
        params={"rank": 1, "world_size": 2, "start": 5, "pad": "false", "offset": 3, "limit": 4},
    ).json()
    assert page["indices"] == stream[5:][1::2][3:7]


def test_summary_of_a_resumed_deal(module_api: TestClient, plan_id: str) -> None:
    stream = _stream(1)
    params = {"epoch": 1, "rank": 1, "world_size": 4, "start": 30, "pad": "false"}
    body = module_api.get(f"/v1/plans/{plan_id}/indices/summary", params=params).json()
    expected = stream[30:][1::4]
    assert body["length"] == len(expected)
    assert body["sha256"] == hashlib.sha256(np.asarray(expected, dtype="<i8").tobytes()).hexdigest()


@pytest.mark.parametrize(
    ("params", "detail"),
    [({"start": 41}, "start should be at most"), ({"start": -1}, "")],
)
def test_bad_starts_are_422(
    module_api: TestClient, plan_id: str, params: dict[str, int], detail: str
) -> None:
    response = module_api.get(f"/v1/plans/{plan_id}/indices", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert detail in response.json()["detail"]
    # The end of the epoch is a valid start: nothing is left.
    assert (
        module_api.get(f"/v1/plans/{plan_id}/indices", params={"start": 40}).json()["indices"] == []
    )
