"""``kill -9`` during a burst of plan creations: no acknowledged plan is lost, no row is partial."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import reference
from tests.helpers.servers import ServerProcess

pytestmark = pytest.mark.slow  # starts processes: `make test-quick` leaves it out

WRITERS = 4
ACKNOWLEDGED_BEFORE_KILL = 60


def _labels(i: int) -> list[int]:
    # A dataset of its own per plan (the class ``i + 3`` appears nowhere else), so every
    # creation writes a dataset row and a plan row in one transaction.
    return [0] * (5 + i % 7) + [1] * (2 + i % 5) + [2] + [i + 3] * (1 + i % 3)


def test_kill_9_mid_burst_loses_no_acknowledged_plan(tmp_path: Path) -> None:
    db = tmp_path / "crash.sqlite3"
    env = {"SAMPLEPLAN_DATABASE_URL": f"sqlite:///{db}"}
    server = ServerProcess(env, tmp_path / "first.log").start()
    acknowledged: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def write(worker: int) -> None:
        i = worker
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                body = {"labels": _labels(i), "seed": i}
                try:
                    response = client.post("/v1/plans", json=body)
                except httpx.TransportError:
                    return  # the server is gone
                if response.status_code == 201:
                    with lock:
                        acknowledged[response.json()["id"]] = body
                i += WRITERS

    writers = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for thread in writers:
        thread.start()
    try:
        deadline = time.monotonic() + 120
        while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()  # writes are still in flight
    finally:
        stop.set()
        for thread in writers:
            thread.join(timeout=60)
        server.stop()
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL

    # The file is whole, and no dataset was written without its plan (or the reverse).
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        orphans = conn.execute(
            "SELECT count(*) FROM datasets WHERE id NOT IN (SELECT dataset_id FROM plans)"
        ).fetchone()
        assert orphans == (0,)
        stored = conn.execute("SELECT count(*) FROM plans").fetchone()[0]
    conn.close()
    assert stored >= len(acknowledged)

    # After a restart every acknowledged plan is there and serves the same stream as torch.
    restarted = ServerProcess(env, tmp_path / "second.log").start()
    try:
        with httpx.Client(base_url=restarted.url, timeout=30) as client:
            for plan_id, body in acknowledged.items():
                plan = client.get(f"/v1/plans/{plan_id}")
                assert plan.status_code == 200, plan_id
                weights = reference.inverse_frequency(body["labels"])
                expected = reference.weighted_stream(weights, len(weights), True, body["seed"] + 1)
                got = client.get(f"/v1/plans/{plan_id}/indices", params={"epoch": 1})
                assert got.json()["indices"] == expected
    finally:
        restarted.stop()
