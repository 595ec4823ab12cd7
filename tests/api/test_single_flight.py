"""Single flight, seen from outside: concurrent requests for one cold epoch draw it once.

The draw is slowed so that every request is surely waiting while it runs, and the epoch
cache keeps nothing (``epoch_cache_bytes=0``): a second draw could only come from a
request that did not join the one in flight. ``sampleplan_epoch_draws_total`` counts.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from sampleplan.core.prepared import PreparedPlan
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from tests.helpers import reference
from tests.helpers.servers import LiveServer

REQUESTS = 12


def draws_total(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    found = re.findall(r'^sampleplan_epoch_draws_total\{algorithm="torch"\} (\S+)$', text, re.M)
    return float(found[0]) if found else 0.0


@pytest.fixture(params=[None, 1], ids=["default-page-threads", "one-page-thread"])
def server(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    original = PreparedPlan.draw_epoch

    def slow_draw(self: PreparedPlan, epoch: int) -> np.ndarray:
        time.sleep(0.5)
        return original(self, epoch)

    monkeypatch.setattr(PreparedPlan, "draw_epoch", slow_draw)
    # With one page thread, eleven of the twelve requests wait for it while the first one
    # draws: they must still share that draw (NOTE [Held while in flight]).
    settings = Settings(database_url=sqlite_url, epoch_cache_bytes=0, page_threads=request.param)
    with LiveServer(create_app(settings)) as live:
        yield live


def _fetch_together(url: str, path: str, epoch: int) -> list[list[int]]:
    """Every rank's shard of ``epoch`` from ``path`` (an /indices endpoint), asked at once."""
    barrier = threading.Barrier(REQUESTS)
    shards: list[list[int]] = [[] for _ in range(REQUESTS)]

    def rank(r: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            barrier.wait()
            params = {"epoch": epoch, "rank": r, "world_size": REQUESTS}
            response = client.get(path, params=params)
            response.raise_for_status()
            shards[r] = response.json()["indices"]

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return shards


def test_concurrent_requests_for_a_cold_epoch_draw_it_once(server: LiveServer) -> None:
    labels = [0] * 300 + [1] * 40 + [2] * 7
    plan = httpx.post(f"{server.url}/v1/plans", json={"labels": labels, "seed": 9}).json()
    assert draws_total(server.url) == 0

    shards = _fetch_together(server.url, f"/v1/plans/{plan['id']}/indices", epoch=3)
    assert draws_total(server.url) == 1
    stream = reference.weighted_stream(reference.inverse_frequency(labels), len(labels), True, 12)
    for r, shard in enumerate(shards):
        assert shard == reference.distributed_shard(stream, r, REQUESTS)

    # Nothing was kept (a budget of 0 bytes): the next wave draws again, once.
    _fetch_together(server.url, f"/v1/plans/{plan['id']}/indices", epoch=3)
    assert draws_total(server.url) == 2


def test_concurrent_requests_for_a_cold_epoch_of_a_run_draw_it_once(server: LiveServer) -> None:
    labels = [0] * 300 + [1] * 40 + [2] * 7
    plan = httpx.post(f"{server.url}/v1/plans", json={"labels": labels, "seed": 9}).json()
    created = httpx.put(f"{server.url}/v1/runs/job-sf", json={"plan_id": plan["id"]})
    assert created.status_code == 201
    shards = _fetch_together(server.url, "/v1/runs/job-sf/indices", epoch=0)
    assert draws_total(server.url) == 1
    # Epoch 0 of a run without updates is its plan's epoch 0: seed + 0.
    stream = reference.weighted_stream(reference.inverse_frequency(labels), len(labels), True, 9)
    for r, shard in enumerate(shards):
        assert shard == reference.distributed_shard(stream, r, REQUESTS)
