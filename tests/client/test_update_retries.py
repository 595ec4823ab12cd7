"""A run update the service committed but answered with a 503 (or whose answer was lost)
is retried by the client under the same update id: applied once, never lost (issue 22)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from sampleplan.client import SamplePlanClient
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app

LABELS = [0] * 6 + [1] * 3 + [2]


class CommitsThenFails(httpx.BaseTransport):
    """Forwards every request to the app; the first ``failures`` update requests are
    committed by the app, then answered with a 503 (or lost: a transport error)."""

    def __init__(self, app_client: TestClient, failures: int, how: str) -> None:
        self.app = app_client
        self.failures = failures
        self.how = how
        self.update_ids: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        forwarded = self.app.request(
            request.method,
            request.url.path,
            params=request.url.params,
            content=request.read(),
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        )
        if request.url.path.endswith("/updates"):
            self.update_ids.append(request.url.params["update_id"])
            if self.failures > 0:
                self.failures -= 1
                assert forwarded.status_code == 202  # committed
                if self.how == "lost":
                    raise httpx.ReadError("connection reset after the request was sent")
                return httpx.Response(
                    503,
                    json={"type": "urn:sampleplan:problem:storage-unavailable", "status": 503},
                    headers={"Content-Type": "application/problem+json"},
                )
        return httpx.Response(
            forwarded.status_code, headers=forwarded.headers, content=forwarded.content
        )


@pytest.fixture
def app_client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client


@pytest.mark.parametrize("how", ["503", "lost"])
def test_a_committed_update_answered_503_is_applied_once(
    app_client: TestClient, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sampleplan.client._client as client_module

    monkeypatch.setattr(client_module.time, "sleep", lambda seconds: None)
    transport = CommitsThenFails(app_client, failures=2, how=how)
    http = httpx.Client(transport=transport, base_url="http://sampleplan.test")
    api = SamplePlanClient("http://sampleplan.test", http_client=http, retries=3)
    plan = api.create_plan(labels=LABELS, seed=3)
    run_id = f"once-{how}"
    api.create_run(run_id, plan.id)
    api.update_weights(run_id, [1, 7], [2.0, 3.0], epoch=0, op="mul")
    # Three attempts of one request, one update id: committed by the first, stored once.
    assert len(transport.update_ids) == 3 and len(set(transport.update_ids)) == 1
    assert app_client.get(f"/v1/runs/{run_id}").json()["updates"] == 1
    weights = np.array(app_client.get(f"/v1/runs/{run_id}/weights?epoch=1").json()["weights"])
    counts = np.bincount(LABELS)
    base = np.array([1.0 / counts[t] for t in LABELS])
    base[1] *= 2.0
    base[7] *= 3.0
    assert weights.tobytes() == base.tobytes()
