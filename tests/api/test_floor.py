"""The floor (NOTE [Serving at the floor] in service/api/floor.py): pages at hand answered
before the middleware stack, byte for byte as the stack answers them.

Each request goes, as raw ASGI messages, to an app with the floor and to one without it
(``fast_lane=False``: every request through FastAPI's routing), with the caller's
``X-Request-ID`` so that the two answers can be compared whole: status, every header in
order, body. The access lines and the request counts must agree too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from torch.utils.data import WeightedRandomSampler

from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from tests.helpers.asgi import call_app as _call
from tests.helpers.asgi import http_scope
from tests.helpers.asgi import whole_answer as _whole
from tests.helpers.floor import answered_at_floor
from tests.helpers.logs import timeless_lines
from tests.helpers.metrics import moved

LABELS = [0] * 40 + [1] * 7 + [2] * 3
SEED = 11
EPOCH = 3
TOKEN = "floor-token-0123"


def sampler_stream(epoch: int) -> list[int]:
    """The epoch as torch draws it: weights 1 / count(class), seeded with seed + epoch."""
    counts = np.bincount(LABELS)
    weights = torch.tensor([1.0 / counts[label] for label in LABELS], dtype=torch.float64)
    generator = torch.Generator().manual_seed(SEED + epoch)
    return list(WeightedRandomSampler(weights, len(LABELS), replacement=True, generator=generator))


class Pair:
    """Two apps on databases of their own, the floor's and the plain one, started."""

    def __init__(self, tmp_path: Any, **settings: Any) -> None:
        self.clients = [
            TestClient(
                create_app(
                    Settings(database_url=f"sqlite:///{tmp_path / f'{name}.sqlite3'}", **settings),
                    fast_lane=fast,
                )
            )
            for name, fast in (("floor", True), ("plain", False))
        ]
        for client in self.clients:
            client.__enter__()
        self.headers = {"Authorization": f"Bearer {TOKEN}"} if settings.get("api_tokens") else {}
        self.plan_id = self.plan({"labels": LABELS, "seed": SEED})

    def plan(self, body: dict[str, Any]) -> str:
        """The id of a plan made in both apps, its epoch EPOCH drawn and cached."""
        ids = set()
        for client in self.clients:
            created = client.post("/v1/plans", json=body, headers=self.headers)
            assert created.status_code in (200, 201), created.text
            ids.add(created.json()["id"])
            # The whole epoch at once: drawn and cached, its pages are then at hand.
            whole = client.get(
                f"/v1/plans/{created.json()['id']}/indices?epoch={EPOCH}", headers=self.headers
            )
            assert whole.status_code == 200
        (plan_id,) = ids
        return plan_id

    def close(self) -> None:
        for client in self.clients:
            client.__exit__(None, None, None)

    def raw(self, method: str, target: str, headers: list[tuple[bytes, bytes]]) -> list[Any]:
        """Each app's ASGI messages for one request (run on its own portal's loop)."""
        answers = []
        for client in self.clients:
            app: FastAPI = client.app  # type: ignore[assignment]
            scope = http_scope(method, target, headers)
            messages: list[dict[str, Any]] = []
            assert client.portal is not None
            client.portal.call(_call, app, scope, messages)
            answers.append(messages)
        return answers


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    pair = Pair(tmp_path_factory.mktemp("floor"), max_page=60, log_level="info")
    yield pair
    pair.close()


def _without_ids(answer: tuple[int, list[tuple[bytes, bytes]], bytes]) -> Any:
    """An answer with its generated request id taken out (headers and problem body)."""
    status, headers, body = answer
    headers = [h for h in headers if h[0] != b"x-request-id"]
    if body.startswith(b"{") and b'"request_id"' in body:
        problem = json.loads(body)
        problem.pop("request_id", None)
        body = json.dumps(problem).encode()
    return status, headers, body


QUERIES = [
    f"epoch={EPOCH}",
    f"epoch={EPOCH}&offset=5&limit=7",
    f"limit=9&offset=40&epoch={EPOCH}",
    f"epoch={EPOCH}&rank=1&world_size=3&offset=2&limit=9",
    f"epoch={EPOCH}&world_size=2&rank=1&offset=3&limit=4&start=7&drop_last=true",
    f"epoch={EPOCH}&pad=false&world_size=7&rank=6&space=dataset",
    f"epoch={EPOCH}&pad=1&drop_last=no&limit=3",
    f"epoch={EPOCH}&offset=+5&limit=7",
    f"epoch={EPOCH}&offset=%35&limit=7",
    f"epoch={EPOCH}&offset=5.0",
    f"epoch={EPOCH}&offset=5&offset=9",
    f"epoch={EPOCH}&limit=",
    f"epoch={EPOCH}&&limit=2",
    f"epoch={EPOCH}&limit",
    f"epoch={EPOCH}&unknown=1",
    f"epoch={EPOCH}&rank=3&world_size=3",
    f"epoch={EPOCH}&rank=1&world_size=1&limit=3",
    f"epoch={EPOCH}&offset=-1",
    f"epoch={EPOCH}&limit=61",
    f"epoch={EPOCH}&start=60",
    f"epoch={EPOCH}&offset=99999999999999999999999",
    f"epoch={EPOCH}&offset=70&limit=5",
    # Plain values read without the model (NOTE [Parameters read plainly]), and their
    # neighbours that only the model reads.
    f"epoch={EPOCH}&offset=007&limit=3&pad=true&drop_last=false&space=population",
    f"epoch={EPOCH}&offset=45&limit=10&start=3",
    f"epoch={EPOCH}&offset=50&limit=0",
    f"epoch={EPOCH}&offset=49&limit=1",
    f"epoch={EPOCH}&limit=5&space=dataset",
    f"epoch={EPOCH}&limit=5&pad=TRUE",
    f"epoch={EPOCH}&limit=5&space=Dataset",
    f"epoch={EPOCH}&limit= 5",
    f"epoch={EPOCH}&limit=5&rank=0&world_size=1",
    f"epoch=0{EPOCH}&limit=5",
    f"epoch={EPOCH}&limit=1_0",
    f"epoch={EPOCH}&offset=1000000000000000000&limit=2",
    f"epoch={EPOCH}&offset=999999999999999999&limit=2",
    "epoch=9&limit=4",  # a cold epoch: not at hand, down the stack
    "epoch=4294967296",
    "",
]

ACCEPTS = [None, b"application/octet-stream", b"application/x-npy", b"text/csv", b"*/*"]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("accept", ACCEPTS)
def test_the_floor_answers_byte_for_byte_what_the_stack_answers(
    pair: Pair, query: str, accept: bytes | None
) -> None:
    headers = [(b"x-request-id", b"floor-compare-1")]
    if accept is not None:
        headers.append((b"accept", accept))
    target = f"/v1/plans/{pair.plan_id}/indices?{query}"
    for method in ("GET", "HEAD"):
        ours, theirs = (_whole(m) for m in pair.raw(method, target, headers))
        assert ours == theirs


@pytest.mark.parametrize(
    "query",
    [
        f"epoch={EPOCH}&offset=3&limit=9&space=dataset",
        f"epoch={EPOCH}&offset=3&limit=9",
        f"epoch={EPOCH}&offset=2&limit=9&space=dataset&world_size=2&rank=1",
    ],
)
def test_a_split_plans_pages_in_either_space_are_the_stacks(pair: Pair, query: str) -> None:
    # Population positions and dataset indices differ: each space has its own numbers.
    plan_id = pair.plan({"labels": LABELS, "seed": SEED, "split": {"fractions": [0.7, 0.3]}})
    target = f"/v1/plans/{plan_id}/indices?{query}"
    for accept in (None, b"application/octet-stream"):
        headers = [(b"x-request-id", b"floor-split-1")]
        if accept is not None:
            headers.append((b"accept", accept))
        for method in ("GET", "HEAD"):
            ours, theirs = (_whole(m) for m in pair.raw(method, target, headers))
            assert ours == theirs


def test_numbers_written_once_follow_a_stream_drawn_again(pair: Pair) -> None:
    # An epoch evicted and drawn again is a new array: its text is written again.
    target = f"/v1/plans/{pair.plan_id}/indices?epoch={EPOCH}&offset=4&limit=6"
    headers = [(b"x-request-id", b"floor-again-1")]
    first = [_whole(m) for m in pair.raw("GET", target, headers)]
    for client in pair.clients:
        client.app.state.catalog.epochs.clear()  # type: ignore[attr-defined]
        assert client.get(f"/v1/plans/{pair.plan_id}/indices?epoch={EPOCH}").status_code == 200
    again = [_whole(m) for m in pair.raw("GET", target, headers)]
    assert again[0] == again[1] == first[0] == first[1]


@pytest.mark.parametrize(
    "extra",
    [
        [],
        [(b"content-length", b"0")],
        [(b"content-encoding", b"gzip")],
        [(b"transfer-encoding", b"chunked")],
        [(b"x-request-id", b'bad" id')],
        [(b"accept", b"application/octet-stream"), (b"accept", b"application/json")],
    ],
)
def test_the_floor_leaves_what_it_does_not_answer_to_the_stack_unchanged(
    pair: Pair, extra: list[tuple[bytes, bytes]]
) -> None:
    target = f"/v1/plans/{pair.plan_id}/indices?epoch={EPOCH}&limit=5"
    ours, theirs = (_without_ids(_whole(m)) for m in pair.raw("GET", target, extra))
    assert ours == theirs


def test_a_paths_lanes_found_once_answer_as_the_stack_past_their_bound(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NOTE [A path's lanes found once]: each path's lanes are kept, at most MAX_PATHS
    paths, then forgotten; pages of more paths than that, asked for again and again
    (paths no lane reads and ids the route refuses among them), are answered as the stack
    answers them, and the floor answers every page at hand."""
    floor_app: Any = pair.clients[0].app
    floor = floor_app.floor
    monkeypatch.setattr(floor, "MAX_PATHS", 2)
    floor._paths.clear()
    plans = [pair.plan_id, pair.plan({"labels": LABELS, "seed": SEED + 1})]
    paths = [f"/v1/plans/{plan_id}/indices" for plan_id in plans]
    others = [f"/v1/plans/{plans[0]}/batches", "/v1/plans/no%20such/indices", "/v1/plan/x/indices"]
    answered = answered_at_floor(monkeypatch)
    for turn in range(3):
        for path in [*paths, *others]:
            target = f"{path}?epoch={EPOCH}&offset={turn}&limit=4"
            headers = [(b"x-request-id", b"floor-paths-1")]
            ours, theirs = (_whole(m) for m in pair.raw("GET", target, headers))
            assert ours == theirs
            assert len(floor._paths) <= 2
    assert answered == paths * 3
    # A path's lanes are its route's, with the path's parameters as the route reads them.
    ((lane, path_params),) = floor._lanes_of(paths[0])
    assert lane.template == "/v1/plans/{plan_id}/indices"
    assert path_params == {"plan_id": plans[0]}
    assert floor._lanes_of("/v1/plans/x/nothing") == ()


def test_under_a_servers_root_path_the_floor_answers_as_the_stack(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's root path (``uvicorn --root-path``) is in the scope's path: each lane's
    route reads such a request whole (not by its path alone), and the floor answers its
    pages as the stack does."""
    answered = answered_at_floor(monkeypatch)
    paths = []
    for inner in (f"/v1/plans/{pair.plan_id}/indices", "/v1/plans/x/nothing"):
        for turn in range(2):
            messages = []
            for client in pair.clients:
                scope = http_scope("GET", f"/api{inner}?epoch={EPOCH}&offset={turn}&limit=5", [])
                scope["root_path"] = "/api"
                scope["headers"].append((b"x-request-id", b"floor-root-1"))
                found: list[dict[str, Any]] = []
                assert client.portal is not None
                client.portal.call(_call, client.app, scope, found)
                messages.append(_whole(found))
            assert messages[0] == messages[1]
            paths.append((inner, messages[0][0]))
    assert [status for _, status in paths] == [200, 200, 404, 404]
    assert answered == [f"/api/v1/plans/{pair.plan_id}/indices"] * 2


def test_a_page_at_the_floor_is_the_samplers_stream(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered = answered_at_floor(monkeypatch)
    floor, _ = pair.clients
    target = f"/v1/plans/{pair.plan_id}/indices"
    page = floor.get(target, params={"epoch": EPOCH, "offset": 10, "limit": 20})
    assert page.json()["indices"] == sampler_stream(EPOCH)[10:30]
    binary = floor.get(
        target,
        params={"epoch": EPOCH, "offset": 10, "limit": 20},
        headers={"Accept": "application/octet-stream"},
    )
    assert np.frombuffer(binary.content, dtype="<i8").tolist() == sampler_stream(EPOCH)[10:30]
    head = floor.head(
        target,
        params={"epoch": EPOCH, "offset": 10, "limit": 20},
        headers={"Accept": "application/octet-stream"},
    )
    assert head.content == b"" and head.headers["content-length"] == str(8 * 20)
    assert answered == [target] * 3, "the floor did not answer pages at hand"
    # A cold epoch is not at hand: the stack answers it (through the fast lane's thread).
    floor.get(target, params={"epoch": 8, "limit": 3})
    assert len(answered) == 3


def test_floor_answers_are_logged_and_counted_as_the_stack_counts_them(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"/v1/plans/{pair.plan_id}/indices?epoch={EPOCH}&offset=3&limit=4"
    before = [c.get("/metrics").text for c in pair.clients]
    capsys.readouterr()
    pair.raw("GET", target, [(b"x-request-id", b"floor-log-1")])
    lines = timeless_lines(capsys.readouterr().err, '"floor-log-1"')
    assert len(lines) == 2
    assert lines[0] == lines[1]
    assert lines[0]["route"] == "/v1/plans/{plan_id}/indices" and lines[0]["status"] == 200
    pattern = (
        r'^sampleplan_(?:http_requests_total\{method="GET",route="/v1/plans/\{plan_id\}/indices",'
        r'status="200"\}|indices_served_total\{algorithm="torch"\}) (\S+)$'
    )
    for client, earlier in zip(pair.clients, before, strict=True):
        assert moved(earlier, client.get("/metrics").text, pattern) == [1.0, 4.0]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        f"Bearer {TOKEN}".encode(),
        b"Bearer wrong-token",
        b"Basic abc",
        b"bearer  " + TOKEN.encode(),
    ],
)
def test_the_floor_keeps_the_token_check(tmp_path: Any, authorization: bytes | None) -> None:
    pair = Pair(tmp_path, api_tokens=TOKEN, max_page=60)
    try:
        headers = [(b"x-request-id", b"floor-auth-1")]
        if authorization is not None:
            headers.append((b"authorization", authorization))
        target = f"/v1/plans/{pair.plan_id}/indices?epoch={EPOCH}&limit=5"
        ours, theirs = (_whole(m) for m in pair.raw("GET", target, headers))
        assert ours == theirs
        assert ours[0] == (200 if authorization and TOKEN.encode() in authorization else 401)
    finally:
        pair.close()


def test_a_failure_at_the_floor_leaves_the_request_to_the_stack(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The floor answers before FastAPI's own 500 guard: whatever goes wrong in it sends
    the request down the whole app, which answers it as it answers without the floor."""
    floor_app: Any = pair.clients[0].app

    def broken(*args: Any) -> None:
        raise RuntimeError("a bug at the floor")

    for lane in floor_app.floor.lanes:
        monkeypatch.setattr(lane, "answer", broken)
    target = f"/v1/plans/{pair.plan_id}/indices?epoch={EPOCH}&offset=2&limit=6"
    headers = [(b"x-request-id", b"floor-broken-1")]
    ours, theirs = (_whole(m) for m in pair.raw("GET", target, headers))
    assert ours == theirs and ours[0] == 200


def test_with_opentelemetry_every_request_crosses_the_app(tmp_path: Any) -> None:
    """FastAPI's telemetry makes a span of every request: the floor stands aside."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'otel.sqlite3'}", opentelemetry=True)
    app: Any = create_app(settings)
    assert app.floor is None
    with TestClient(app) as client:
        plan_id = client.post("/v1/plans", json={"labels": LABELS, "seed": SEED}).json()["id"]
        whole = client.get(f"/v1/plans/{plan_id}/indices", params={"epoch": EPOCH})
        page = client.get(
            f"/v1/plans/{plan_id}/indices", params={"epoch": EPOCH, "offset": 5, "limit": 9}
        )
    assert whole.json()["indices"] == sampler_stream(EPOCH)
    assert page.json()["indices"] == sampler_stream(EPOCH)[5:14]


def test_in_multiprocess_mode_every_request_crosses_the_app(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prometheus_client's multiprocess values live in files the floor cannot add to
    (NOTE [Counting per thread]): the floor stands aside, and pages are what they are."""
    from prometheus_client import values

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    try:
        settings = Settings(database_url=f"sqlite:///{tmp_path / 'multi.sqlite3'}")
        app: Any = create_app(settings)
        assert app.floor is None
        with TestClient(app) as client:
            plan = client.post("/v1/plans", json={"labels": LABELS, "seed": SEED}).json()["id"]
            client.get(f"/v1/plans/{plan}/indices", params={"epoch": EPOCH})
            page = client.get(
                f"/v1/plans/{plan}/indices", params={"epoch": EPOCH, "offset": 2, "limit": 4}
            )
        assert page.json()["indices"] == sampler_stream(EPOCH)[2:6]
    finally:
        values.close_all_multiprocess_files()
