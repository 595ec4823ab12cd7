"""The fast lane (NOTE [Fast lane] in service/api/fastlane.py): cached pages past FastAPI.

It must answer exactly what the route answers, take nothing the route would refuse, and
leave the middlewares around it (tokens, access log, metrics) in force.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from torch.utils.data import WeightedRandomSampler

from sampleplan.service.api.fastlane import RouteReader, get_route
from sampleplan.service.api.routes import plans
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app

LABELS = [0] * 40 + [1] * 7 + [2] * 3
SEED = 11
EPOCH = 3


def sampler_stream(epoch: int) -> list[int]:
    """The epoch as torch draws it: weights 1 / count(class), seeded with seed + epoch."""
    counts = np.bincount(LABELS)
    weights = torch.tensor([1.0 / counts[label] for label in LABELS], dtype=torch.float64)
    generator = torch.Generator().manual_seed(SEED + epoch)
    return list(WeightedRandomSampler(weights, len(LABELS), replacement=True, generator=generator))


def shard(stream: list[int], rank: int, world_size: int) -> list[int]:
    """DistributedSampler(drop_last=False): padded from the beginning, then strided."""
    total = -(-len(stream) // world_size) * world_size
    padded = stream + stream[: total - len(stream)]
    return padded[rank:total:world_size]


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The parameters of every request the fast lane (or the floor) answered (apps built
    after it)."""
    seen: list[dict[str, Any]] = []
    original = plans.fast_indices

    async def spy(scope: Any, parameters: dict[str, Any]) -> Any:
        recorded = dict(parameters)
        response = await original(scope, parameters)
        if response is not None:
            seen.append(recorded)
        return response

    at_hand = plans.indices_at_hand

    def floor_spy(catalog: Any, scope: Any, accept: Any, parameters: dict[str, Any]) -> Any:
        # Pages at hand are answered before the stack (NOTE [Serving at the floor]).
        recorded = dict(parameters)
        response = at_hand(catalog, scope, accept, parameters)
        if response is not None:
            seen.append(recorded)
        return response

    monkeypatch.setattr(plans, "fast_indices", spy)
    monkeypatch.setattr(plans, "indices_at_hand", floor_spy)
    return seen


def _client(tmp_path: Any, name: str, *, fast_lane: bool, **settings: Any) -> TestClient:
    url = f"sqlite:///{tmp_path / f'{name}.sqlite3'}"
    return TestClient(create_app(Settings(database_url=url, **settings), fast_lane=fast_lane))


def _cached_plan(client: TestClient, **headers: str) -> str:
    created = client.post("/v1/plans", json={"labels": LABELS, "seed": SEED}, headers=headers)
    assert created.status_code in (200, 201), created.text
    plan_id: str = created.json()["id"]
    # The whole epoch at once is drawn and cached; a page of it is then a slice.
    whole = client.get(f"/v1/plans/{plan_id}/indices", params={"epoch": EPOCH}, headers=headers)
    assert whole.status_code == 200
    return plan_id


@pytest.fixture
def both(tmp_path: Any, answered: list[dict[str, Any]]) -> Iterator[tuple[TestClient, TestClient]]:
    with (
        _client(tmp_path, "fast", fast_lane=True, max_page=60) as fast,
        _client(tmp_path, "plain", fast_lane=False, max_page=60) as plain,
    ):
        yield fast, plain


@pytest.mark.parametrize(
    ("rank", "world_size", "offset", "limit"),
    [(0, 1, 0, 10), (0, 1, 45, None), (1, 3, 2, 9), (6, 7, 0, None), (2, 4, 10, 5)],
)
def test_a_cached_page_from_the_fast_lane_is_the_samplers_stream(
    both: tuple[TestClient, TestClient],
    answered: list[dict[str, Any]],
    rank: int,
    world_size: int,
    offset: int,
    limit: int | None,
) -> None:
    fast, _ = both
    plan_id = _cached_plan(fast)
    params: dict[str, Any] = {"epoch": EPOCH, "rank": rank, "world_size": world_size}
    params["offset"] = offset
    if limit is not None:
        params["limit"] = limit
    response = fast.get(f"/v1/plans/{plan_id}/indices", params=params)
    assert response.status_code == 200
    expected = shard(sampler_stream(EPOCH), rank, world_size)
    stop = None if limit is None else offset + limit
    assert response.json()["indices"] == expected[offset:stop]
    assert response.headers["X-Sampleplan-Stream-Length"] == str(len(expected))
    assert answered, "the fast lane did not answer a page of a cached epoch"

    binary = fast.get(
        f"/v1/plans/{plan_id}/indices",
        params=params,
        headers={"Accept": "application/octet-stream"},
    )
    assert binary.headers["content-type"] == "application/octet-stream"
    assert np.frombuffer(binary.content, dtype="<i8").tolist() == expected[offset:stop]


def test_a_page_of_a_cold_epoch_from_the_fast_lane_is_the_samplers_stream(
    both: tuple[TestClient, TestClient], answered: list[dict[str, Any]]
) -> None:
    fast, _ = both
    plan_id = _cached_plan(fast)
    params = {"epoch": 9, "rank": 1, "world_size": 4, "offset": 2, "limit": 6}
    response = fast.get(f"/v1/plans/{plan_id}/indices", params=params)
    assert response.json()["indices"] == shard(sampler_stream(9), 1, 4)[2:8]
    assert answered[-1]["epoch"] == 9


# Odd spellings the route reads in its own way (pydantic's lax parsing), values it
# refuses, and rules no schema states: the fast lane must agree with the route on each.
QUERIES = [
    "epoch=3",
    "epoch=3&offset=5&limit=7",
    "epoch=3&pad=1&drop_last=no",
    "epoch=3&pad=True&space=dataset",
    "epoch=3&offset=+5&limit=7",
    "epoch=3&offset=5.0",
    "epoch=3&offset=0x10",
    "epoch=3&offset=5&offset=9",
    "epoch=3&limit=",
    "epoch=3&unknown=1",
    "epoch=3&rank=3&world_size=3",
    "epoch=3&rank=1&world_size=0",
    "epoch=3&offset=-1",
    "epoch=4294967296",
    "epoch=3&limit=61",
    "epoch=3&start=60",
    "epoch=3&start=49&world_size=2&rank=1&pad=false",
    "epoch=3&space=elsewhere",
    "epoch=3&pad=maybe",
    "epoch=3&offset=99999999999999999999999",
    "epoch=%33&rank=%31&world_size=2",
    "epoch=3&world_size=2&rank=1&offset=3&limit=4&start=7&drop_last=true",
]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("accept", [None, "application/octet-stream", "text/csv"])
def test_the_fast_lane_answers_what_the_route_answers(
    both: tuple[TestClient, TestClient], query: str, accept: str | None
) -> None:
    fast, plain = both
    plan_id = _cached_plan(fast)
    assert _cached_plan(plain) == plan_id
    headers = {"Accept": accept} if accept else {}
    answers = [
        client.get(f"/v1/plans/{plan_id}/indices?{query}", headers=headers)
        for client in (fast, plain)
    ]
    ours, theirs = answers
    assert ours.status_code == theirs.status_code, (ours.text, theirs.text)
    assert ours.headers["content-type"] == theirs.headers["content-type"]
    for name in ("x-sampleplan-stream-length", "x-sampleplan-offset", "x-sampleplan-dtype"):
        assert ours.headers.get(name) == theirs.headers.get(name)
    if ours.headers["content-type"].startswith("application/problem+json"):
        # The same problem, but for the request's own id.
        mine, other = ours.json(), theirs.json()
        mine.pop("request_id", None), other.pop("request_id", None)
        assert mine == other
    else:
        assert ours.content == theirs.content


@pytest.mark.parametrize("query", ["epoch=3&offset=5&offset=9", "epoch=3&unknown=1", "epcoh=3"])
def test_unknown_and_repeated_parameters_are_a_422_in_both_lanes(
    both: tuple[TestClient, TestClient], query: str
) -> None:
    """NOTE [Query parameters] in service/api/queries.py: FastAPI would have ignored them."""
    for client in both:
        plan_id = _cached_plan(client)
        response = client.get(f"/v1/plans/{plan_id}/indices?{query}")
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"


def test_a_page_of_an_unknown_plan_is_a_404_problem(both: tuple[TestClient, TestClient]) -> None:
    fast, _ = both
    response = fast.get("/v1/plans/" + "0" * 64 + "/indices", params={"limit": 3})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_the_fast_lane_is_behind_the_token_check(
    tmp_path: Any, answered: list[dict[str, Any]]
) -> None:
    token = "s3cret-token-for-the-fast-lane"
    with _client(tmp_path, "auth", fast_lane=True, api_tokens=token) as client:
        plan_id = _cached_plan(client, Authorization=f"Bearer {token}")
        path = f"/v1/plans/{plan_id}/indices?epoch={EPOCH}&limit=5"
        before = len(answered)
        refused = client.get(path)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert len(answered) == before
        allowed = client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert allowed.json()["indices"] == sampler_stream(EPOCH)[:5]
        assert len(answered) == before + 1


def test_fast_lane_answers_are_logged_and_counted_under_their_route(
    both: tuple[TestClient, TestClient],
    answered: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fast, _ = both
    plan_id = _cached_plan(fast)
    with caplog.at_level("INFO", logger="sampleplan.access"):
        response = fast.get(
            f"/v1/plans/{plan_id}/indices",
            params={"epoch": EPOCH, "limit": 4},
            headers={"X-Request-ID": "fast-lane-1"},
        )
    assert answered
    assert response.headers["x-request-id"] == "fast-lane-1"
    records = [r for r in caplog.records if getattr(r, "request_id", None) == "fast-lane-1"]
    assert [getattr(r, "route", None) for r in records] == ["/v1/plans/{plan_id}/indices"]
    metrics = fast.get("/metrics").text
    counted = re.search(
        r'^sampleplan_http_requests_total\{method="GET",route="/v1/plans/\{plan_id\}/indices",'
        r'status="200"\} (\S+)$',
        metrics,
        re.M,
    )
    assert counted is not None and float(counted.group(1)) >= 2  # the warm-up and the page


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
@pytest.mark.parametrize("query", ["", "?verbose=1"])
def test_healthz_in_its_fast_lane_answers_what_its_route_answers(
    both: tuple[TestClient, TestClient], method: str, query: str
) -> None:
    answers = [client.request(method, f"/healthz{query}") for client in both]
    ours, theirs = answers
    assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content)
    assert ours.headers.get("content-type") == theirs.headers.get("content-type")
    if method == "GET":
        assert ours.json() == {"status": "ok"}


PLAIN_QUERIES = [
    "epoch=3&limit=1000&offset=77",
    "offset=0&epoch=0",
    "epoch=4294967295&rank=6&world_size=7&space=dataset&pad=false&drop_last=true&start=9",
    "limit=0&&offset=007",
    "",
    "offset=999999999999999999",
    "epoch=4294967296",
    "world_size=0",
    "offset=1000000000000000000",
    "pad=True",
    "pad=1",
    "space=Dataset",
    "offset= 5",
    "offset=5.0",
    "offset=1_0",
    "offset=%35",
    "offset=+5",
    "offset=\u0665".encode().decode("latin-1"),
    "limit=",
    "limit",
    "offset=1&offset=2",
    "plan_id=abc",
    "unknown=1",
]


@pytest.mark.parametrize("query", PLAIN_QUERIES)
def test_parameters_read_plainly_are_the_models_reading(query: str) -> None:
    # NOTE [Parameters read plainly]: a query read without the model is read as the
    # route's own pydantic model (what FastAPI validates with) reads it, or left to it.
    reader = RouteReader(get_route(plans.router, plans.get_indices))
    plain = reader._read_plainly(query.encode("latin-1"))
    query_values = reader.query(query.encode("latin-1"))
    if plain is None:
        return
    assert query_values is not None
    model = reader.model.model_validate({"plan_id": "p", **query_values})
    assert {**plain, "plan_id": "p"} == dict(model.__dict__)


#: Queries the one-pattern reading takes or leaves to the field-by-field one (NOTE
#: [Parameters read plainly]): any order, each name once, canonical digits within bounds.
PATTERN_QUERIES = [
    *PLAIN_QUERIES,
    "world_size=3&rank=2&offset=5&limit=10&space=population&start=4&pad=true&drop_last=false",
    "drop_last=true&epoch=999999999",
    "epoch=1000000000",
    "epoch=1&limit=2&epoch=1",
    "limit=2&epoch=1&limit=2",
    "epoch=1&",
    "&epoch=1",
    "epoch=01",
    "epoch=1&&limit=2",
    "limit=5x",
    "space=population&space=dataset",
    "pad=true&pad=true",
    "offset=1&offset=1",
    "epoch=1\n",
    "epoch=1&plan_id=p",
    "world_size=1&rank=1",
]


@pytest.mark.parametrize("query", PATTERN_QUERIES)
def test_the_one_pattern_reads_as_the_fields_are_read(query: str) -> None:
    # The pattern is a shortcut: it reads what it matches as the field-by-field reading
    # does, and whatever it does not match is read that way.
    reader = RouteReader(get_route(plans.router, plans.get_indices))
    assert reader.pattern is not None
    quick = reader._read_plainly(query.encode("latin-1"))
    reader.pattern = None
    assert quick == reader._read_plainly(query.encode("latin-1"))


def test_the_one_pattern_takes_the_common_queries() -> None:
    pattern = RouteReader(get_route(plans.router, plans.get_indices)).pattern
    assert pattern is not None
    for query in [*PLAIN_QUERIES[:2], PATTERN_QUERIES[len(PLAIN_QUERIES)]]:
        assert pattern.fullmatch(query), query
    for query in ["epoch=1&limit=2&epoch=1", "epoch=01", "epoch=1&", "limit=5x", "epoch=1\n"]:
        assert not pattern.fullmatch(query), query


def test_common_queries_are_read_plainly() -> None:
    reader = RouteReader(get_route(plans.router, plans.get_indices))
    for query in PLAIN_QUERIES[:6]:
        assert reader._read_plainly(query.encode()) is not None, query
    for query in PLAIN_QUERIES[6:]:
        assert reader._read_plainly(query.encode("latin-1")) is None, query
