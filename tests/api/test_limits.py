"""Request limits: body size (413 before the body is read whole), timeouts (504), and the
configured values shown in the API docs."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from sampleplan.core.prepared import PreparedPlan
from sampleplan.service.api.limits import RequestTimeoutMiddleware
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from tests.helpers.servers import LiveServer

MAX_BODY = 8 * 1024


@pytest.fixture
def small_body_settings(sqlite_url: str) -> Settings:
    return Settings(database_url=sqlite_url, max_body_bytes=MAX_BODY)


@pytest.fixture
def limited(small_body_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(small_body_settings)) as client:
        yield client


def _labels_body(n: int) -> bytes:
    return json.dumps({"labels": [i % 3 for i in range(n)]}).encode()


def _is_413(response: object) -> None:
    from httpx import Response

    assert isinstance(response, Response)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith(":payload-too-large")
    assert f"at most {MAX_BODY} bytes" in body["detail"]


def test_a_declared_oversize_body_is_refused_and_writes_nothing(limited: TestClient) -> None:
    body = _labels_body(5_000)
    assert len(body) > MAX_BODY
    response = limited.post(
        "/v1/datasets", content=body, headers={"content-type": "application/json"}
    )
    _is_413(response)
    assert response.headers["connection"] == "close"
    assert limited.app.state.catalog.store.count() == (0, 0)  # type: ignore[attr-defined]


def test_a_chunked_oversize_body_is_refused(limited: TestClient) -> None:
    body = _labels_body(5_000)
    chunks = (body[i : i + 1000] for i in range(0, len(body), 1000))  # no Content-Length
    response = limited.post(
        "/v1/plans", content=chunks, headers={"content-type": "application/json"}
    )
    _is_413(response)
    assert limited.app.state.catalog.store.count() == (0, 0)  # type: ignore[attr-defined]


def test_a_body_at_the_limit_is_accepted(limited: TestClient) -> None:
    body = _labels_body(100)
    body = body[:-1] + b" " * (MAX_BODY - len(body)) + b"}"  # padded to exactly the limit
    assert len(body) == MAX_BODY
    response = limited.post(
        "/v1/datasets", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 201


def _http_exchange(port: int, head: bytes, body_chunks: Iterable[bytes] = ()) -> bytes:
    """Send ``head`` and chunks on a raw socket; return what the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close as soon as it has answered
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    return answer


def test_a_real_server_answers_413_without_reading_the_body(small_body_settings: Settings) -> None:
    server = LiveServer(create_app(small_body_settings)).start()
    try:
        # Ten gigabytes announced, not one byte sent: only an early answer can arrive.
        head = (
            b"POST /v1/datasets HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000000\r\n\r\n"
        )
        answer = _http_exchange(server.port, head)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"payload-too-large" in answer

        # A chunked body is refused at the chunk that crosses the limit.
        head = (
            b"POST /v1/datasets HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        piece = b" " * 1024
        chunks = (b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(MAX_BODY // 1024 + 1))
        answer = _http_exchange(server.port, head, chunks)
        assert answer.startswith(b"HTTP/1.1 413 ")
    finally:
        server.stop()


def test_a_request_without_a_response_in_time_gets_504(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'slow.sqlite3'}"
    with TestClient(create_app(Settings(database_url=url))) as patient:
        plan = patient.post(
            "/v1/plans", json={"labels": [0, 1, 1, 2] * 50, "num_samples": 4_000_000}
        )
        plan_id = plan.json()["id"]
    # The page is drawn in a worker thread that takes 0.5 s: far longer than 10 ms. (A
    # real draw of it, by skipping ahead, can take less.)
    original = PreparedPlan.indices

    def slow_indices(self: PreparedPlan, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PreparedPlan, "indices", slow_indices)
    with TestClient(create_app(Settings(database_url=url, request_timeout_seconds=0.01))) as hasty:
        response = hasty.get(
            f"/v1/plans/{plan_id}/indices", params={"offset": 3_999_990, "limit": 5}
        )
        assert response.status_code == 504
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"].endswith(":request-timeout")
        assert "SAMPLEPLAN_REQUEST_TIMEOUT_SECONDS" in problem["detail"]
        assert response.headers["x-request-id"]
        assert hasty.get("/healthz").status_code == 200


def test_the_docs_show_the_configured_limits(sqlite_url: str) -> None:
    settings = Settings(
        database_url=sqlite_url,
        max_body_bytes=123_457,
        max_labels=98_765,
        max_page=4_321,
        max_num_samples=55_555,
        request_timeout_seconds=7.5,
    )
    with TestClient(create_app(settings)) as client:
        description = client.get("/openapi.json").json()["info"]["description"]
    for text in ["123457 bytes", "98765", "4321", "55555", "7.5 s", "No token is required"]:
        assert text in description


async def _slow_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers ``/late-start`` after 0.3 s; ``/slow-body`` starts at once, then streams slowly."""
    if scope["path"] == "/late-start":
        await anyio.sleep(0.3)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    for part in (b"first ", b"second ", b"third"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
        await anyio.sleep(0.1)
    await send({"type": "http.response.body", "body": b""})


def test_the_timeout_bounds_the_wait_for_the_start_not_the_streaming() -> None:
    app = RequestTimeoutMiddleware(_slow_app, timeout_seconds=0.15)

    async def fetch(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    late = anyio.run(fetch, "/late-start")
    assert late.status_code == 504 and late.json()["type"].endswith(":request-timeout")
    streamed = anyio.run(fetch, "/slow-body")  # 0.3 s of body, after a prompt start
    assert streamed.status_code == 200 and streamed.text == "first second third"
