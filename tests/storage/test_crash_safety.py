"""``kill -9`` during a burst of plan creations: no acknowledged plan is lost, no row is partial."""

from __future__ import annotations

import sqlite3
import struct
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import reference
from tests.helpers.servers import ForkedServer

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
    server = ForkedServer(env, tmp_path / "first.log").start()
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
    restarted = ForkedServer(env, tmp_path / "second.log").start()
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


RUN_WORKERS = 3
RUN_LABELS = [0] * 240 + [1] * 96 + [2] * 64  # 400 samples: 3200 bytes of weights


def test_kill_9_while_frozen_epochs_are_stored_loses_no_acknowledged_update(
    tmp_path: Path,
) -> None:
    """Runs whose epochs are frozen as they go, so the server keeps storing frozen epochs
    (derived ones, and keyframes: with 3200 bytes of weights, an eighth of them in updates
    makes one every third epoch) and
    batches of updates when it is killed. After a restart every acknowledged update is
    stored, and every frozen epoch serves the weights it served before the kill, which
    are those the stored updates make by the rule written out (NOTE [Run updates])."""
    db = tmp_path / "runs.sqlite3"
    env = {"SAMPLEPLAN_DATABASE_URL": f"sqlite:///{db}"}
    server = ForkedServer(env, tmp_path / "first.log").start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        plan_id = client.post("/v1/plans", json={"labels": RUN_LABELS, "seed": 4}).json()["id"]
        for worker in range(RUN_WORKERS):
            client.put(f"/v1/runs/crash-{worker}", json={"plan_id": plan_id}).raise_for_status()
    acknowledged: set[str] = set()
    served: dict[tuple[str, int], list[float]] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def train(worker: int) -> None:
        run = f"crash-{worker}"
        with httpx.Client(base_url=server.url, timeout=30) as client:
            epoch = 0
            while not stop.is_set():
                try:
                    answer = client.get(f"/v1/runs/{run}/weights", params={"epoch": epoch})
                    if answer.status_code == 200:
                        with lock:
                            served[(run, epoch)] = answer.json()["weights"]
                    for step in range(3):
                        update_id = f"{run}-{epoch}-{step}"
                        body = {
                            "epoch": epoch,
                            "step": step,
                            "op": "mul" if step % 2 else "set",
                            "indices": [(epoch * 7 + step * 3 + k) % 400 for k in range(3)],
                            "values": [1.0 + ((epoch + step + k) % 5) / 4 for k in range(3)],
                            "update_id": update_id,
                        }
                        if client.post(f"/v1/runs/{run}/updates", json=body).status_code == 202:
                            with lock:
                                acknowledged.add(update_id)
                except httpx.TransportError:
                    return  # the server is gone
                epoch += 1

    trainers = [threading.Thread(target=train, args=(w,)) for w in range(RUN_WORKERS)]
    for thread in trainers:
        thread.start()
    try:
        deadline = time.monotonic() + 120
        while len(acknowledged) < 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()  # updates and freezes are in flight
    finally:
        stop.set()
        for thread in trainers:
            thread.join(timeout=60)
        server.stop()
    assert len(acknowledged) >= 150

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored_ids = {row[0] for row in conn.execute("SELECT update_id FROM run_updates")}
        rows = conn.execute(
            'SELECT run_id, epoch, step, rank, seq, op, indices, "values" FROM run_updates'
        ).fetchall()
        kinds = conn.execute(
            "SELECT count(*), count(weights), count(base_epoch) FROM run_epochs"
        ).fetchone()
    conn.close()
    assert acknowledged <= stored_ids, sorted(acknowledged - stored_ids)[:5]
    assert kinds[1] > 0 and kinds[2] > 0, kinds  # keyframes and derived epochs were both stored

    restarted = ForkedServer(env, tmp_path / "second.log").start()
    try:
        with httpx.Client(base_url=restarted.url, timeout=30) as client:
            for worker in range(RUN_WORKERS):
                run = f"crash-{worker}"
                frozen = client.get(f"/v1/runs/{run}").json()["frozen_epochs"]
                assert {e for (r, e) in served if r == run} <= set(frozen)
                weights = reference.inverse_frequency(RUN_LABELS)
                mine = sorted(
                    (r for r in rows if r[0] == run), key=lambda r: (r[1], r[2], r[3], r[4])
                )
                for epoch in range(max(frozen) + 1):
                    if epoch in frozen:
                        got = client.get(f"/v1/runs/{run}/weights", params={"epoch": epoch})
                        assert got.json()["weights"] == weights, (run, epoch)
                        if (run, epoch) in served:
                            assert served[(run, epoch)] == weights, (run, epoch)
                    for _, _, _, _, _, op, raw_indices, raw_values in (
                        r for r in mine if r[1] == epoch
                    ):
                        indices = struct.unpack(f"<{len(raw_indices) // 8}q", raw_indices)
                        values = struct.unpack(f"<{len(raw_values) // 8}d", raw_values)
                        for i, v in zip(indices, values, strict=True):
                            weights[i] = v if op == "set" else weights[i] * v
    finally:
        restarted.stop()
