"""Retries, errors, token and progress of both clients, against ``httpx.MockTransport``."""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from sampleplan.client import (
    AsyncSamplePlanClient,
    ClientRequestError,
    NotFoundError,
    RetryPolicy,
    SamplePlanClient,
    SamplePlanError,
    ServerError,
    TimeoutException,
    TransportError,
)
from sampleplan.client import _client as client_module

PLAN_ID = "ab" * 32
Handler = Callable[[httpx.Request], httpx.Response]


def indices_response(values: list[int]) -> httpx.Response:
    return httpx.Response(200, json={"plan_id": PLAN_ID, "indices": values})


class ChunkedBody(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that arrives in 64 KiB pieces, as from a real socket."""

    def __init__(self, body: bytes) -> None:
        self.chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def streamed_indices_response(values: list[int]) -> httpx.Response:
    body = json.dumps({"plan_id": PLAN_ID, "indices": values}).encode()
    headers = {"content-type": "application/json", "content-length": str(len(body))}
    return httpx.Response(200, headers=headers, stream=ChunkedBody(body))


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"type": "about:blank", "title": "Oops", "status": status, "detail": detail}
    return httpx.Response(
        status, json=body, headers={"content-type": "application/problem+json", **(headers or {})}
    )


class Script:
    """Answers requests from a list, one item per request; records what was sent."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def handle_async(self, request: httpx.Request) -> httpx.Response:
        return self(request)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The waits between attempts, recorded instead of slept."""
    recorded: list[float] = []

    async def fake_async_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(client_module.time, "sleep", recorded.append)
    monkeypatch.setattr(client_module.anyio, "sleep", fake_async_sleep)
    yield recorded


def sync_client(script: Script, **options: Any) -> SamplePlanClient:
    http = httpx.Client(transport=httpx.MockTransport(script))
    return SamplePlanClient("http://sampleplan.test", http_client=http, **options)


def async_client(script: Script, **options: Any) -> AsyncSamplePlanClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(script.handle_async))
    return AsyncSamplePlanClient("http://sampleplan.test", http_client=http, **options)


# -- sync ---------------------------------------------------------------------------------


def test_503_then_200_succeeds(sleeps: list[float]) -> None:
    script = Script(problem(503, "database restarting"), indices_response([3, 1, 4]))
    with sync_client(script, retries=2, backoff=0.5) as api:
        got = api.indices(PLAN_ID, epoch=2, rank=1, world_size=3, offset=5, limit=3)
    assert got.tolist() == [3, 1, 4] and got.dtype == np.int64
    assert len(script.requests) == 2
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.5
    params = dict(script.requests[1].url.params)
    assert params == {
        "epoch": "2",
        "rank": "1",
        "world_size": "3",
        "offset": "5",
        "limit": "3",
        "space": "population",
    }


def test_persistent_5xx_raises_server_error_after_the_configured_attempts(
    sleeps: list[float],
) -> None:
    script = Script(*[problem(503, "still down") for _ in range(4)])
    api = sync_client(script, retries=3, backoff=0.1)
    with pytest.raises(ServerError) as info:
        api.get_plan(PLAN_ID)
    assert len(script.requests) == 4
    assert info.value.status_code == 503
    assert info.value.attempts == 4
    assert info.value.detail == "still down"
    assert "after 4 attempts" in str(info.value)
    # Exponential backoff with full jitter: attempt k waits at most backoff * 2**k.
    assert len(sleeps) == 3
    assert all(0 <= s <= 0.1 * 2**k for k, s in enumerate(sleeps))


def test_connection_errors_are_retried_then_raised_as_transport_error(
    sleeps: list[float],
) -> None:
    refused = httpx.ConnectError("connection refused")
    script = Script(refused, refused, refused)
    api = sync_client(script, retries=2, backoff=0.0)
    with pytest.raises(TransportError) as info:
        api.weights(PLAN_ID)
    assert not isinstance(info.value, TimeoutException)
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert "after 3 attempts" in str(info.value)
    assert len(script.requests) == 3


def test_timeouts_raise_timeout_error(sleeps: list[float]) -> None:
    script = Script(httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow"))
    with pytest.raises(TimeoutException) as info:
        sync_client(script, retries=1).get_plan(PLAN_ID)
    assert isinstance(info.value, TransportError)
    assert len(script.requests) == 2


def test_a_connection_error_then_success(sleeps: list[float]) -> None:
    script = Script(httpx.ConnectError("refused"), indices_response([7]))
    assert sync_client(script, retries=1).indices(PLAN_ID).tolist() == [7]


def test_retry_after_seconds_is_honoured(sleeps: list[float]) -> None:
    script = Script(problem(429, "slow down", {"Retry-After": "2"}), indices_response([1]))
    sync_client(script, retries=1, backoff=100.0).indices(PLAN_ID)
    assert sleeps == [2.0]


def test_retry_after_http_date_is_honoured(sleeps: list[float]) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    script = Script(problem(503, "maintenance", {"Retry-After": when}), indices_response([1]))
    sync_client(script, retries=1, backoff=0.0).indices(PLAN_ID)
    assert len(sleeps) == 1 and 25 <= sleeps[0] <= 31


def test_retry_after_is_capped() -> None:
    response = httpx.Response(503, headers={"Retry-After": "86400"})
    assert RetryPolicy(max_retry_after=60.0).delay(0, response) == 60.0


def test_4xx_is_not_retried(sleeps: list[float]) -> None:
    script = Script(problem(404, "no plan has id 'x'"), problem(422, "epoch should be ..."))
    api = sync_client(script, retries=3)
    with pytest.raises(NotFoundError) as info:
        api.get_plan("x")
    assert info.value.attempts == 1 and "no plan has id" in str(info.value)
    with pytest.raises(ClientRequestError):
        api.indices(PLAN_ID, epoch=-1)
    assert len(script.requests) == 2 and sleeps == []


def test_an_error_without_problem_json_still_has_a_detail() -> None:
    script = Script(httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(ServerError) as info:
        sync_client(script, retries=0).get_plan(PLAN_ID)
    assert "bad gateway" in info.value.detail


def test_bearer_token_and_paths() -> None:
    script = Script(httpx.Response(200, json={"status": "ready"}))
    with sync_client(script, token="s3cret") as api:
        assert api.health() is True
    assert script.requests[0].headers["authorization"] == "Bearer s3cret"
    assert script.requests[0].url.path == "/readyz"


def test_ids_cannot_change_the_route() -> None:
    script = Script(problem(404, "no such plan"))
    with pytest.raises(NotFoundError):
        sync_client(script).get_plan("../datasets/x?y=1")
    assert script.requests[0].url.raw_path == b"/v1/plans/..%2Fdatasets%2Fx%3Fy%3D1"


def test_health_is_false_when_unreachable(sleeps: list[float]) -> None:
    script = Script(httpx.ConnectError("refused"))
    assert sync_client(script, retries=0).health() is False


def test_context_manager_closes_its_own_client_but_not_an_injected_one() -> None:
    with SamplePlanClient("http://sampleplan.test") as own:
        http = own._http
    assert http.is_closed
    injected = httpx.Client(transport=httpx.MockTransport(Script()))
    with SamplePlanClient("http://sampleplan.test", http_client=injected):
        pass
    assert not injected.is_closed
    injected.close()


def test_bad_retry_options_are_refused() -> None:
    with pytest.raises(ValueError, match="retries should be a non-negative integer"):
        SamplePlanClient(retries=-1)
    with pytest.raises(ValueError, match="backoff should be a non-negative number"):
        SamplePlanClient(backoff=float("nan"))


def test_plan_request_body() -> None:
    plan = {
        "id": PLAN_ID,
        "dataset_id": "cd" * 32,
        "config": {"seed": 1, "replacement": True, "algorithm": "torch"},
        "population_size": 3,
        "num_samples": 3,
        "classes": [],
        "versions": {},
    }
    script = Script(httpx.Response(201, json=plan))
    api = sync_client(script)
    got = api.create_plan(labels=np.array([0, 1, 1]), strategy="sample_weights", weights=[1, 2, 3])
    assert got.id == PLAN_ID and got.seed == 1
    body = json.loads(script.requests[0].content)
    assert body == {"labels": [0, 1, 1], "strategy": "sample_weights", "weights": [1.0, 2.0, 3.0]}


def test_progress_bar_for_a_large_download(capsys: pytest.CaptureFixture[str]) -> None:
    values = list(range(300_000))  # about 2 MB of JSON
    script = Script(streamed_indices_response(values))
    with sync_client(script, progress=True) as api:
        assert api.indices(PLAN_ID).tolist() == values
    err = capsys.readouterr().err
    assert "GET /v1/plans/abababab…/indices" in err and re.search(r"\d\.\d+M/2\.\d+M", err)


def test_no_progress_bar_for_a_small_download(capsys: pytest.CaptureFixture[str]) -> None:
    with sync_client(Script(indices_response([1, 2])), progress=True) as api:
        api.indices(PLAN_ID)
    assert capsys.readouterr().err == ""


# -- async: the same behaviour through the same policy --------------------------------------


@pytest.mark.anyio
async def test_async_503_then_200_succeeds(sleeps: list[float]) -> None:
    script = Script(problem(503, "restarting"), indices_response([2, 7]))
    async with async_client(script, retries=1, token="t") as api:
        got = await api.indices(PLAN_ID, epoch=1)
    assert got.tolist() == [2, 7]
    assert len(script.requests) == 2 and len(sleeps) == 1
    assert script.requests[1].headers["authorization"] == "Bearer t"


@pytest.mark.anyio
async def test_async_persistent_errors_surface_after_the_configured_attempts(
    sleeps: list[float],
) -> None:
    script = Script(*[problem(500, "boom") for _ in range(3)])
    api = async_client(script, retries=2)
    with pytest.raises(ServerError) as info:
        await api.get_plan(PLAN_ID)
    assert info.value.attempts == 3 and len(sleeps) == 2
    refused = httpx.ConnectError("refused")
    script.answers = [refused, refused, refused]
    with pytest.raises(TransportError):
        await api.weights(PLAN_ID)
    script.answers = [refused, refused, refused]
    assert await api.health() is False
    await api.aclose()


@pytest.mark.anyio
async def test_async_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    values = list(range(300_000))
    async with async_client(Script(streamed_indices_response(values)), progress=True) as api:
        assert (await api.indices(PLAN_ID)).tolist() == values
    assert re.search(r"\d\.\d+M/2\.\d+M", capsys.readouterr().err)


def test_every_error_is_a_sampleplan_error() -> None:
    for error in (TransportError, TimeoutException, ServerError, NotFoundError, ClientRequestError):
        assert issubclass(error, SamplePlanError)


def test_request_sends_raw_content() -> None:
    script = Script(httpx.Response(201, json={"id": "x"}))
    api = sync_client(script)
    body = np.arange(3, dtype="<i8").tobytes()
    response = api.request(
        "POST", "/v1/datasets", content=body, headers={"content-type": "application/octet-stream"}
    )
    assert response.json() == {"id": "x"}
    assert script.requests[0].content == body
    assert script.requests[0].headers["content-type"] == "application/octet-stream"
