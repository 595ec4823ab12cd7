"""Two replicas (two ``sampleplan serve`` processes) on one PostgreSQL database."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.helpers import reference
from tests.helpers.servers import ForkedServer

pytestmark = pytest.mark.slow  # starts processes: `make test-quick` leaves it out

PLANS: list[dict[str, Any]] = [
    {"labels": [0] * 40 + [1] * 9 + [2] * 3, "seed": 11},
    {
        "labels": ["cat"] * 25 + ["dog"] * 6,
        "seed": 5,
        "split": {"fractions": [0.7, 0.3], "seed": 9},
    },
    {"labels": [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9], "strategy": "inverse_sqrt_frequency"},
]
CALLERS_PER_REPLICA = 3


def _create_everywhere(urls: list[str], body: dict[str, Any]) -> list[httpx.Response]:
    """POST the same plan from several threads per replica, released at one moment."""
    targets = [url for url in urls for _ in range(CALLERS_PER_REPLICA)]
    barrier = threading.Barrier(len(targets))
    responses: list[httpx.Response | None] = [None] * len(targets)

    def call(i: int) -> None:
        with httpx.Client(base_url=targets[i], timeout=60) as client:
            barrier.wait()
            responses[i] = client.post("/v1/plans", json=body)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(targets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(r is not None for r in responses)
    return [r for r in responses if r is not None]


def _expected_stream(body: dict[str, Any], epoch: int) -> list[int]:
    labels = body["labels"]
    split = body.get("split")
    population = reference.population(
        len(labels), split["fractions"] if split else None, split["seed"] if split else 0
    )
    targets = [labels[i] for i in population]
    if body.get("strategy") == "inverse_sqrt_frequency":
        weights = reference.inverse_sqrt_frequency(targets)
    else:
        weights = reference.inverse_frequency(targets)
    return reference.weighted_stream(weights, len(targets), True, body.get("seed", 0) + epoch)


def test_two_replicas_agree_on_plans_and_streams(fresh_postgres_url: str, tmp_path: Path) -> None:
    env = {"SAMPLEPLAN_DATABASE_URL": fresh_postgres_url, "SAMPLEPLAN_LOG_LEVEL": "info"}
    # Both start at the same moment on an empty database: the schema is created once.
    replicas = [ForkedServer(env, tmp_path / f"replica-{i}.log").launch() for i in range(2)]
    try:
        for replica in replicas:
            replica.wait_ready()
        urls = [replica.url for replica in replicas]

        plan_ids = []
        for body in PLANS:
            responses = _create_everywhere(urls, body)
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [200] * (len(responses) - 1) + [201], statuses
            ids = {r.json()["id"] for r in responses}
            assert len(ids) == 1
            plan_ids.append(ids.pop())

        engine = sa.create_engine(fresh_postgres_url)
        with engine.connect() as conn:
            for plan_id in plan_ids:
                rows = conn.execute(
                    sa.text("SELECT count(*) FROM plans WHERE id = :id"), {"id": plan_id}
                )
                assert rows.scalar_one() == 1
            assert conn.execute(sa.text("SELECT count(*) FROM plans")).scalar_one() == len(PLANS)
            assert conn.execute(sa.text("SELECT count(*) FROM datasets")).scalar_one() == len(PLANS)
            assert conn.execute(sa.text("SELECT count(*) FROM schema_version")).scalar_one() == 1
        engine.dispose()

        with httpx.Client(timeout=60) as client:
            for body, plan_id in zip(PLANS, plan_ids, strict=True):
                for epoch in (0, 3):
                    expected = _expected_stream(body, epoch)
                    for rank, world_size in [(0, 1), (1, 3)]:
                        params = {"epoch": epoch, "rank": rank, "world_size": world_size}
                        pages = [
                            client.get(f"{url}/v1/plans/{plan_id}/indices", params=params).json()[
                                "indices"
                            ]
                            for url in urls
                        ]
                        assert (
                            pages[0]
                            == pages[1]
                            == reference.distributed_shard(expected, rank, world_size)
                        )
    finally:
        for replica in replicas:
            replica.stop()

    # `sampleplan serve` writes JSON lines only, uvicorn's own included; requests carry ids.
    for replica in replicas:
        lines = [
            json.loads(line) for line in replica.log_path.read_text().splitlines() if line.strip()
        ]
        assert any(line["logger"].startswith("uvicorn") for line in lines)
        access = [line for line in lines if line["logger"] == "sampleplan.access"]
        assert any(
            line["route"] == "/v1/plans/{plan_id}/indices" and line["request_id"] for line in access
        )
