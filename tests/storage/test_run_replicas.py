"""Runs on SQLite and PostgreSQL, and two ``sampleplan serve`` replicas racing on one run."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from tests.helpers import reference
from tests.helpers.servers import ForkedServer

LABELS = [0] * 50 + [1] * 10 + [2] * 20


def _inverse_frequency() -> list[float]:
    counts = Counter(LABELS)
    return [1.0 / counts[t] for t in LABELS]


def test_runs_on_each_database(database_url: str) -> None:
    """Updates, freezes and a late 409 behave the same on SQLite and PostgreSQL."""
    with TestClient(create_app(Settings(database_url=database_url))) as api:
        plan_id = api.post("/v1/plans", json={"labels": LABELS, "seed": 2}).json()["id"]
        assert api.put("/v1/runs/db-run", json={"plan_id": plan_id}).status_code == 201
        api.get("/v1/runs/db-run/indices", params={"epoch": 0})
        for rank in (2, 0, 1):
            body = {
                "epoch": 0,
                "rank": rank,
                "step": 0,
                "op": "ema",
                "alpha": 0.5,
                "indices": [5],
                "values": [float(rank)],
            }
            assert api.post("/v1/runs/db-run/updates", json=body).status_code == 202
        expected = _inverse_frequency()
        for rank in (0, 1, 2):
            expected[5] = 0.5 * expected[5] + 0.5 * float(rank)
        assert api.get("/v1/runs/db-run/weights", params={"epoch": 1}).json()["weights"] == expected
        late = {"epoch": 0, "op": "set", "indices": [1], "values": [1.0]}
        assert api.post("/v1/runs/db-run/updates", json=late).status_code == 409
        assert api.get("/v1/runs/db-run").json()["frozen_epochs"] == [0, 1]


@pytest.mark.slow  # starts processes: `make test-quick` leaves it out
def test_two_replicas_racing_a_freeze_and_updates_agree(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    env = {"SAMPLEPLAN_DATABASE_URL": fresh_postgres_url}
    replicas = [ForkedServer(env, tmp_path / f"replica-{i}.log").launch() for i in range(2)]
    try:
        for replica in replicas:
            replica.wait_ready()
        urls = [replica.url for replica in replicas]
        with httpx.Client(base_url=urls[0], timeout=60) as api:
            plan_id = api.post("/v1/plans", json={"labels": LABELS, "seed": 4}).json()["id"]
            assert api.put("/v1/runs/race", json={"plan_id": plan_id}).status_code == 201
        # Many updates of epoch 0 on both replicas while both freeze epoch 1.
        barrier = threading.Barrier(8)
        accepted: list[dict[str, object]] = []
        refused: list[int] = []
        lock = threading.Lock()

        def send(i: int) -> None:
            with httpx.Client(base_url=urls[i % 2], timeout=60) as client:
                barrier.wait()
                for step in range(10):
                    body = {
                        "epoch": 0,
                        "rank": i,
                        "step": step,
                        "op": "mul",
                        "indices": [i, 40 + step],
                        "values": [1.5, 1.1],
                    }
                    response = client.post("/v1/runs/race/updates", json=body)
                    with lock:
                        if response.status_code == 202:
                            accepted.append(body)
                        else:
                            assert response.status_code == 409, response.text
                            refused.append(i)

        frozen: list[list[float]] = []

        def freeze(i: int) -> None:
            with httpx.Client(base_url=urls[i % 2], timeout=60) as client:
                barrier.wait()
                weights = client.get("/v1/runs/race/weights", params={"epoch": 1}).json()["weights"]
                with lock:
                    frozen.append(weights)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
        threads += [threading.Thread(target=freeze, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        # Every accepted update, and no refused one, is in the frozen weights, on both.
        expected = _inverse_frequency()
        for body in sorted(accepted, key=lambda b: (b["step"], b["rank"])):
            for index, value in zip(body["indices"], body["values"], strict=True):  # type: ignore[call-overload]
                expected[index] = expected[index] * value
        answers = [
            httpx.get(f"{url}/v1/runs/race/weights", params={"epoch": 1}, timeout=60).json()[
                "weights"
            ]
            for url in urls
        ]
        assert answers[0] == answers[1] == expected
        assert frozen == [expected, expected]
        streams = [
            httpx.get(f"{url}/v1/runs/race/indices", params={"epoch": 1}, timeout=60).json()[
                "indices"
            ]
            for url in urls
        ]
        assert (
            streams[0]
            == streams[1]
            == reference.weighted_stream(expected, len(LABELS), True, 4 + 1)
        )
        info = httpx.get(f"{urls[1]}/v1/runs/race", timeout=60).json()
        assert info["updates"] == len(accepted) and len(accepted) + len(refused) == 60
    finally:
        for replica in replicas:
            replica.stop()
