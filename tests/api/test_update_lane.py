"""Run updates at the floor (NOTE [Updates at the floor] in service/api/update_lane.py):
small JSON updates answered before FastAPI's layers, byte for byte as the route answers
them, on SQLite and on PostgreSQL.

Each request goes, as raw ASGI messages, to an app with the floor and to one without it
(``fast_lane=False``: every request through FastAPI's routing), each on a database of its
own, with the caller's ``X-Request-ID`` so that the two answers can be compared whole:
status, every header in order, body. Both apps get the same requests in the same order,
so their runs stay alike; the weights the updates made are checked against numpy.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sampleplan.service import run_catalog
from sampleplan.service.api import update_lane
from sampleplan.service.api.limits import RequestTimeoutMiddleware
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from sampleplan.service.run_catalog import RunCatalog
from tests.helpers.asgi import http_scope
from tests.helpers.databases import create_database, drop_database, postgres_problem
from tests.helpers.logs import timeless_lines

LABELS = [0] * 12 + [1] * 6 + [2] * 2
SEED = 5
TOKEN = "lane-token-0123"
UPDATES = "/v1/runs/{}/updates"


class Pair:
    """Two apps, the floor's and the plain one, each on its own database, started; the
    same plan, and the same runs, in each."""

    def __init__(self, urls: list[str], **settings: Any) -> None:
        self.clients = [
            TestClient(create_app(Settings(database_url=url, **settings), fast_lane=fast))
            for url, fast in zip(urls, (True, False), strict=True)
        ]
        for client in self.clients:
            client.__enter__()
        self.headers = {"Authorization": f"Bearer {TOKEN}"} if settings.get("api_tokens") else {}
        ids = {
            c.post("/v1/plans", json={"labels": LABELS, "seed": SEED}, headers=self.headers).json()[
                "id"
            ]
            for c in self.clients
        }
        (self.plan_id,) = ids
        self.runs = 0

    def run(self, name: str) -> str:
        """A new run of the plan in both apps, its id ``name`` and a number (the apps
        serve several tests)."""
        self.runs += 1
        run_id = f"{name}-{self.runs}"
        for client in self.clients:
            made = client.put(
                f"/v1/runs/{run_id}", json={"plan_id": self.plan_id}, headers=self.headers
            )
            assert made.status_code == 201, made.text
        return run_id

    def close(self) -> None:
        for client in self.clients:
            client.__exit__(None, None, None)

    def raw(
        self,
        target: str,
        body: bytes | list[bytes],
        headers: list[tuple[bytes, bytes]],
        *,
        method: str = "POST",
    ) -> list[tuple[int, list[tuple[bytes, bytes]], bytes]]:
        """Each app's answer to one request (status, headers, body)."""
        chunks = body if isinstance(body, list) else [body]
        answers = []
        for client in self.clients:
            app: FastAPI = client.app  # type: ignore[assignment]
            scope = http_scope(method, target, headers)
            messages: list[dict[str, Any]] = []
            assert client.portal is not None
            client.portal.call(_call, app, scope, chunks, messages)
            answers.append(_whole(messages))
        return answers


async def _call(
    app: FastAPI, scope: dict[str, Any], chunks: list[bytes], messages: list[dict[str, Any]]
) -> None:
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    try:
        await app(scope, receive, send)
    except Exception as exc:
        # FastAPI's 500 guard answers an unexpected error, then raises it to the server.
        messages.append({"type": "raised", "error": f"{type(exc).__name__}: {exc}"})


def _whole(messages: list[dict[str, Any]]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    raised = [m["error"].encode() for m in messages if m["type"] == "raised"]
    return start["status"], [tuple(h) for h in start["headers"]], body + b"".join(raised)


def _json_headers(body: bytes, request_id: bytes = b"lane-1") -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id),
    ]


@contextmanager
def _databases(kind: str, folder: Path) -> Iterator[list[str]]:
    """Two empty databases of one kind."""
    if kind == "sqlite":
        yield [f"sqlite:///{folder / f'{name}.sqlite3'}" for name in ("floor", "plain")]
        return
    problem = postgres_problem()
    if problem is not None:
        pytest.skip(f"PostgreSQL NOT TESTED: {problem}")
    urls = [create_database("sampleplan_lane") for _ in range(2)]
    try:
        yield urls
    finally:
        for url in urls:
            drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """Two empty databases of one kind, for apps of their own settings."""
    with _databases(request.param, tmp_path) as urls:
        yield urls


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """The pair of apps of the default settings, one per kind of database for the module's
    tests (each test makes runs of its own: starting apps costs more than the tests)."""
    with _databases(request.param, tmp_path_factory.mktemp("lane")) as urls:
        pair = Pair(urls, log_level="info")
        try:
            yield pair
        finally:
            pair.close()


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the lane answered (as opposed to those it left to the stack)."""
    paths: list[str] = []
    original = update_lane.UpdateLane._answer

    async def spy(self: Any, scope: Any, *args: Any) -> None:
        paths.append(scope["path"])
        await original(self, scope, *args)

    monkeypatch.setattr(update_lane.UpdateLane, "_answer", spy)
    return paths


def _body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


ACCEPTED = [
    _body(epoch=0, op="set", indices=[1, 2, 3], values=[2.0, 0.5, 1.25]),
    _body(epoch=0, op="mul", indices=[0, 19], values=[3.0, 0.5], rank=1, step=2),
    _body(epoch=0, op="ema", alpha=0.25, indices=[4], values=[8.0], update_id="ema-1"),
    b'{"epoch":0,"op":"set","indices":[],"values":[]}',
    b' {"op": "set", "values": [1e0], "indices": [7], "epoch": 0, "update_id": "spaced"} ',
]


@pytest.mark.parametrize("on_the_loop", [True, False])
def test_accepted_updates_are_the_routes_answers_and_make_its_weights(
    pair: Pair, answered: list[str], monkeypatch: pytest.MonkeyPatch, on_the_loop: bool
) -> None:
    # Checked and queued on the event loop (a small run's), or in a worker thread (NOTE
    # [Small runs' updates on the event loop] in run_catalog.py).
    monkeypatch.setattr(run_catalog, "_INLINE_WEIGHTS", len(LABELS) if on_the_loop else 0)
    floor_runs = pair.clients[0].app.state.runs  # type: ignore[attr-defined]
    submitted_in: list[str] = []
    submit = RunCatalog._submit

    def spy(self: RunCatalog, *args: Any) -> Any:
        if self is floor_runs:
            submitted_in.append(threading.current_thread().name)
        return submit(self, *args)

    monkeypatch.setattr(RunCatalog, "_submit", spy)
    run_id = pair.run("lane-accepted")
    target = UPDATES.format(run_id)
    for i, body in enumerate(ACCEPTED):
        ours, theirs = pair.raw(target, body, _json_headers(body, f"acc-{i}".encode()))
        assert ours == theirs
        assert ours[0] == 202
        assert json.loads(ours[2])["updates"] == i + 1
    # A charset parameter, a body in two messages: still the lane's.
    body = _body(epoch=0, op="set", indices=[9], values=[4.0])
    headers = _json_headers(body, b"acc-charset")
    headers[0] = (b"content-type", b"Application/JSON; charset=utf-8")
    ours, theirs = pair.raw(target, [body[:10], body[10:]], headers)
    assert ours == theirs and ours[0] == 202
    assert answered == [target] * (len(ACCEPTED) + 1)
    # The first update reads the run's plan from the store (in a worker thread); the
    # plan is at hand for the others.
    in_workers = ["AnyIO worker" in name for name in submitted_in]
    assert in_workers == [True] + [not on_the_loop] * len(ACCEPTED)
    # The weights of epoch 1 are those the updates make, as numpy computes them.
    counts = np.bincount(LABELS)
    expected = np.array([1.0 / counts[label] for label in LABELS])
    expected[[1, 2, 3]] = [2.0, 0.5, 1.25]
    expected[[0, 19]] *= [3.0, 0.5]
    expected[4] = 0.75 * expected[4] + 0.25 * 8.0
    expected[7] = 1.0
    expected[9] = 4.0
    weights = [
        c.get(f"/v1/runs/{run_id}/weights", params={"epoch": 1}).json()["weights"]
        for c in pair.clients
    ]
    assert weights[0] == weights[1]
    np.testing.assert_allclose(weights[0], expected, rtol=1e-12)


def test_an_update_id_names_one_payload_at_the_floor(pair: Pair, answered: list[str]) -> None:
    run_id = pair.run("lane-retry")
    target = UPDATES.format(run_id)
    body = _body(epoch=0, op="set", indices=[5], values=[3.0], update_id="once")
    for attempt in range(2):
        ours, theirs = pair.raw(target, body, _json_headers(body, b"retry-%d" % attempt))
        assert ours == theirs and ours[0] == 202
        assert json.loads(ours[2])["updates"] == 1
    other = _body(epoch=0, op="set", indices=[5], values=[4.0], update_id="once")
    ours, theirs = pair.raw(target, other, _json_headers(other, b"retry-other"))
    assert ours == theirs and ours[0] == 409
    assert json.loads(ours[2])["type"] == "urn:sampleplan:problem:update-id-conflict"
    assert len(answered) == 3


def test_a_frozen_epoch_and_an_unknown_run_are_the_routes_problems(
    pair: Pair, answered: list[str]
) -> None:
    run_id = pair.run("lane-frozen")
    for client in pair.clients:
        assert client.get(f"/v1/runs/{run_id}/weights", params={"epoch": 1}).status_code == 200
    body = _body(epoch=0, op="set", indices=[1], values=[2.0])
    ours, theirs = pair.raw(UPDATES.format(run_id), body, _json_headers(body, b"frozen"))
    assert ours == theirs and ours[0] == 409
    ours, theirs = pair.raw(UPDATES.format("nobody"), body, _json_headers(body, b"nobody"))
    assert ours == theirs and ours[0] == 404
    assert len(answered) == 2


REFUSED = [
    b"",
    b"{bad",
    b"[]",
    b"null",
    b'{"epoch":0,"op":"set","indices":[1],"values":[1.0]',
    _body(epoch="x", op="set", indices=[1], values=[1.0]),
    _body(epoch=-1, op="set", indices=[1], values=[1.0]),
    _body(epoch=0, op="add", indices=[1], values=[1.0]),
    _body(epoch=0, op="set", indices=["a"], values=[1.0]),
    _body(epoch=0, op="set", indices=[1.5], values=[1.0]),
    _body(epoch=0, op="set", indices=[True], values=[1.0]),
    _body(epoch=0, op="set", indices=[1], values=[True]),
    _body(epoch=0, op="set", indices=[1], values=["1"]),
    _body(epoch=0, op="set", indices=[1, 2], values=[1.0]),
    _body(epoch=0, op="set", indices=[20], values=[1.0]),
    _body(epoch=0, op="set", indices=[-1], values=[1.0]),
    _body(epoch=0, op="set", indices=[1], values=[-1.0]),
    _body(epoch=0, op="set", indices=list(range(20)), values=[0.0] * 20),
    _body(epoch=0, op="set", indices=[1], values=[1.0], alpha=0.5),
    _body(epoch=0, op="ema", indices=[1], values=[1.0], alpha=2.0),
    _body(epoch=0, op="set", indices=[1], values=[1.0], update_id="no spaces"),
    _body(epoch=0, op="set", indices=[1], values=[1.0], unknown=1),
    _body(op="set", indices=[1], values=[1.0]),
    b'{"epoch":0,"op":"set","indices":[1],"values":[NaN]}',
    b'{"epoch":0,"op":"set","indices":[1],"values":[1e999]}',
    b'{"epoch":0,"op":"set","indices":[' + b"9" * 5000 + b'],"values":[1.0]}',
    b'{"epoch":0,"op":"set","indices":[99999999999999999999],"values":[1.0]}',
    '{"epoch":0,"op":"set","indices":[1],"values":[1.0],"update_id":"é"}'.encode(),
    b'{"epoch":0,"op":"set","indices":[1],"values":[1.0]}\xff',
]


@pytest.mark.parametrize("body", REFUSED, ids=range(len(REFUSED)))
def test_bad_updates_get_the_routes_problems(pair: Pair, answered: list[str], body: bytes) -> None:
    run_id = pair.run("lane-bad")
    target = UPDATES.format(run_id)
    ours, theirs = pair.raw(target, body, _json_headers(body, b"bad-1"))
    assert ours == theirs
    assert ours[0] in (400, 422), ours
    assert ours[1][1] == (b"content-type", b"application/problem+json")
    assert answered == [target]
    # Nothing was stored.
    assert [c.get(f"/v1/runs/{run_id}").json()["updates"] for c in pair.clients] == [0, 0]


def _binary(indices: list[int], values: list[float]) -> bytes:
    return np.asarray(indices, "<i8").tobytes() + np.asarray(values, "<f8").tobytes()


@pytest.mark.parametrize(
    ("query", "headers", "body"),
    [
        ("epoch=0", _json_headers(b'{"epoch":0}', b"stack-1"), b'{"epoch":0}'),
        (
            "epoch=0&op=set",
            [(b"content-type", b"application/octet-stream"), (b"content-length", b"32")],
            _binary([1, 2], [2.0, 3.0]),
        ),
        ("", [(b"content-type", b"text/plain"), (b"content-length", b"2")], b"{}"),
        ("", [(b"content-length", b"2")], b"{}"),
        (
            "",
            [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")],
            b"\x1f\x8b\x08\x00",
        ),
        (
            "",
            [(b"content-type", b"application/json"), (b"content-encoding", b"identity")],
            b"{}",
        ),
        (
            "",
            [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
            b'{"epoch":0,"op":"set","indices":[1],"values":[1.0]}',
        ),
        (
            "",
            [
                (b"content-type", b"application/json"),
                (b"content-type", b"text/plain"),
                (b"content-length", b"2"),
            ],
            b"{}",
        ),
    ],
)
def test_what_the_lane_does_not_take_the_stack_answers_unchanged(
    pair: Pair,
    answered: list[str],
    query: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    run_id = pair.run("lane-stack")
    target = UPDATES.format(run_id) + (f"?{query}" if query else "")
    headers = [*headers, (b"x-request-id", b"stack-1")]
    ours, theirs = pair.raw(target, body, headers)
    assert ours == theirs
    assert answered == []


def test_a_bad_run_id_and_other_posts_are_the_stacks(pair: Pair, answered: list[str]) -> None:
    body = _body(epoch=0, op="set", indices=[1], values=[1.0])
    for path in ("/v1/runs/a%20b/updates", "/v1/runs/a b/updates", "/v1/runs/" + "x" * 129):
        ours, theirs = pair.raw(path + "/updates", body, _json_headers(body, b"other-1"))
        assert ours == theirs
    labels = json.dumps({"labels": LABELS, "seed": SEED + 1}).encode()
    ours, theirs = pair.raw("/v1/plans", labels, _json_headers(labels, b"other-2"))
    assert ours == theirs and ours[0] == 201
    assert answered == []


def test_the_body_limit_is_the_stacks(database_pair: list[str], answered: list[str]) -> None:
    pair = Pair(database_pair, max_body_bytes=80)
    try:
        run_id = pair.run("lane-limit")
        target = UPDATES.format(run_id)
        small = _body(epoch=0, op="set", indices=[1], values=[1.0])
        large = _body(epoch=0, op="set", indices=list(range(10)), values=[1.0] * 10)
        assert len(small) <= 80 < len(large)
        for body in (small, large):
            ours, theirs = pair.raw(target, body, _json_headers(body, b"limit-1"))
            assert ours == theirs
        assert [a[0] for a in (ours,)] == [413]
        assert answered == [target]
    finally:
        pair.close()


@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {TOKEN}".encode(), b"Bearer wrong-token", b"Basic abc"],
)
def test_the_lane_keeps_the_token_check(
    database_pair: list[str], answered: list[str], authorization: bytes | None
) -> None:
    pair = Pair(database_pair, api_tokens=TOKEN)
    try:
        run_id = pair.run("lane-auth")
        body = _body(epoch=0, op="set", indices=[1], values=[2.0])
        headers = _json_headers(body, b"auth-1")
        if authorization is not None:
            headers.append((b"authorization", authorization))
        ours, theirs = pair.raw(UPDATES.format(run_id), body, headers)
        assert ours == theirs
        valid = authorization == f"Bearer {TOKEN}".encode()
        assert ours[0] == (202 if valid else 401)
        assert len(answered) == (1 if valid else 0)
    finally:
        pair.close()


def test_lane_answers_are_logged_and_counted_as_the_stack_counts_them(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = pair.run("lane-log")
    before = [c.get("/metrics").text for c in pair.clients]
    capsys.readouterr()
    body = _body(epoch=0, op="set", indices=[1], values=[2.0])
    pair.raw(UPDATES.format(run_id), body, _json_headers(body, b"lane-log-1"))
    bad = b"{bad"
    pair.raw(UPDATES.format(run_id), bad, _json_headers(bad, b"lane-log-2"))
    lines = timeless_lines(capsys.readouterr().err, '"lane-log-')
    assert len(lines) == 4
    assert lines[0] == lines[1] and lines[2] == lines[3]
    assert lines[0]["route"] == "/v1/runs/{run_id}/updates" and lines[0]["status"] == 202
    assert lines[2]["status"] == 400
    pattern = (
        r'^sampleplan_http_requests_total\{method="POST",route="/v1/runs/\{run_id\}/updates",'
        r'status="(202|400)"\} (\S+)$'
    )
    for client, earlier in zip(pair.clients, before, strict=True):
        now = dict(re.findall(pattern, client.get("/metrics").text, re.M))
        was = dict(re.findall(pattern, earlier, re.M))
        assert {k: float(v) - float(was.get(k, 0)) for k, v in now.items()} == {
            "202": 1.0,
            "400": 1.0,
        }


def test_a_commit_past_the_timeout_is_the_stacks_504(
    database_pair: list[str], answered: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The set-up (a plan, a run) under the default timeout, which a busy machine keeps
    # (a run made on PostgreSQL once took more than 0.8 s in CI); the update under 0.8 s.
    pair = Pair(database_pair)
    try:
        run_id = pair.run("lane-slow")
        for client in pair.clients:
            _set_request_timeout(client.app, 0.8, monkeypatch)  # type: ignore[arg-type]
            runs: RunCatalog = client.app.state.runs  # type: ignore[attr-defined]
            for writer in runs._writers:
                commit = writer._commit

                def slow(batch: Any, commit: Any = commit) -> None:
                    time.sleep(1.1)  # past the timeout, then committed all the same
                    commit(batch)

                monkeypatch.setattr(writer, "_commit", slow)
        body = _body(epoch=0, op="set", indices=[1], values=[2.0], update_id="slow")
        ours, theirs = pair.raw(UPDATES.format(run_id), body, _json_headers(body, b"slow-1"))
        assert ours == theirs and ours[0] == 504
        assert len(answered) == 1
        # Its deadline went with it to the writer, which wrote nothing (NOTE [Deadlines]).
        time.sleep(0.6)
        assert [c.get(f"/v1/runs/{run_id}").json()["updates"] for c in pair.clients] == [0, 0]
    finally:
        pair.close()


def _set_request_timeout(app: FastAPI, seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's request timeout from now on: its timeout middleware's (found down its
    built middleware stack) and its update lane's, when it has one."""
    found = 0
    layer: Any = app.middleware_stack
    for _ in range(64):  # the stack is a chain of a few layers, each with its .app
        if layer is None:
            break
        if isinstance(layer, RequestTimeoutMiddleware):
            monkeypatch.setattr(layer, "timeout_seconds", seconds)
            found += 1
        layer = getattr(layer, "app", None)
    assert found == 1, "the app's stack has one request timeout"
    floor = getattr(app, "floor", None)
    if floor is not None and floor.updates is not None:
        monkeypatch.setattr(floor.updates, "timeout_seconds", seconds)


def test_an_unexpected_failure_is_answered_as_the_stack_answers_it(
    pair: Pair, answered: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = pair.run("lane-broken")

    async def broken(self: RunCatalog, *args: Any) -> None:
        raise RuntimeError("a bug in the run catalog")

    monkeypatch.setattr(RunCatalog, "add_update_async", broken)
    body = _body(epoch=0, op="set", indices=[1], values=[2.0])
    ours, theirs = pair.raw(UPDATES.format(run_id), body, _json_headers(body, b"broken-1"))
    assert ours == theirs and ours[0] == 500
    assert ours[2].endswith(b"a bug in the run catalog")  # raised on to the server
    assert len(answered) == 1


def test_a_large_update_is_parsed_in_a_worker_thread(pair: Pair, answered: list[str]) -> None:
    # Past LANE_BODY_BYTES: parsed in the worker thread, as the route parses it.
    run_id = pair.run("lane-large")
    indices = [i % len(LABELS) for i in range(3000)]
    values = [0.5 + (i % 7) / 4 for i in range(3000)]
    body = _body(epoch=0, op="set", indices=indices, values=values, update_id="large")
    assert len(body) > update_lane.LANE_BODY_BYTES
    ours, theirs = pair.raw(UPDATES.format(run_id), body, _json_headers(body, b"large-1"))
    assert ours == theirs and ours[0] == 202
    expected = np.empty(len(LABELS))
    expected[indices] = values  # the last of each index wins, as numpy assigns
    weights = [
        c.get(f"/v1/runs/{run_id}/weights", params={"epoch": 1}).json()["weights"]
        for c in pair.clients
    ]
    assert weights[0] == weights[1] == expected.tolist()
    assert answered == [UPDATES.format(run_id)]


def test_a_run_made_again_for_another_plan_takes_that_plans_updates(
    pair: Pair, answered: list[str]
) -> None:
    run_id = pair.run("lane-again")
    target = UPDATES.format(run_id)
    first = _body(epoch=0, op="set", indices=[1], values=[2.0])
    for i in range(2):  # the second with the run's plan at hand
        ours, theirs = pair.raw(target, first, _json_headers(first, b"again-%d" % i))
        assert ours == theirs and ours[0] == 202
    labels = LABELS * 2
    other = {
        c.post("/v1/plans", json={"labels": labels, "seed": SEED}).json()["id"]
        for c in pair.clients
    }
    (other_id,) = other
    for client in pair.clients:
        assert client.delete(f"/v1/runs/{run_id}").status_code == 204
        assert client.put(f"/v1/runs/{run_id}", json={"plan_id": other_id}).status_code == 201
    # Index 30 is past the first plan's 20 weights: the run's new plan takes it.
    body = _body(epoch=0, op="set", indices=[30], values=[9.0])
    ours, theirs = pair.raw(target, body, _json_headers(body, b"again-other"))
    assert ours == theirs and ours[0] == 202
    assert json.loads(ours[2])["plan_id"] == other_id and json.loads(ours[2])["updates"] == 1
    assert len(answered) == 3


def test_a_client_gone_before_its_body_is_the_stacks(pair: Pair, answered: list[str]) -> None:
    run_id = pair.run("lane-gone")
    body = _body(epoch=0, op="set", indices=[1], values=[2.0])
    ours, theirs = pair.raw(UPDATES.format(run_id), [], _json_headers(body, b"gone-1"))
    assert ours == theirs
    assert [c.get(f"/v1/runs/{run_id}").json()["updates"] for c in pair.clients] == [0, 0]
    assert len(answered) == 1
