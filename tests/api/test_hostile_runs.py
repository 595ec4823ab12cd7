"""Hostile and heavy input to runs (issue 22), on SQLite and PostgreSQL: repeated indices
cost O(n log n), a request past its timeout stops working, reads never end a run, an
update id names one payload."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sampleplan.core.deadlines import check_deadline, deadline
from sampleplan.core.errors import DeadlineExceeded
from sampleplan.core.runs import RunUpdate, apply_update
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from sampleplan.service.storage import UpdateRecord

LABELS = [0] * 30 + [1] * 6 + [2] * 12


@pytest.fixture
def api(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client


def _run(api: TestClient, run_id: str, labels: list[int] = LABELS) -> str:
    plan = api.post("/v1/plans", json={"labels": labels, "seed": 5})
    assert plan.status_code in (200, 201), plan.text
    assert api.put(f"/v1/runs/{run_id}", json={"plan_id": plan.json()["id"]}).status_code in (
        200,
        201,
    )
    return str(plan.json()["id"])


def _binary(indices: np.ndarray, values: np.ndarray) -> bytes:
    return np.asarray(indices, "<i8").tobytes() + np.asarray(values, "<f8").tobytes()


def _one_by_one(
    weights: np.ndarray, indices: np.ndarray, values: np.ndarray, op: str, alpha: float
) -> np.ndarray:
    """The definition: each occurrence applied alone, in the order given (numpy float64)."""
    out = weights.copy()
    for i, v in zip(indices.tolist(), values.tolist(), strict=True):
        if op == "set":
            out[i] = np.float64(v)
        elif op == "mul":
            out[i] = out[i] * np.float64(v)
        else:
            out[i] = np.float64(1.0 - alpha) * out[i] + np.float64(alpha) * np.float64(v)
    return out


@pytest.mark.parametrize("op", ["set", "mul", "ema"])
def test_repeated_indices_apply_in_order_bit_for_bit(op: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(60):
        size = int(rng.integers(1, 80))
        n = int(rng.integers(0, 3000))
        indices = rng.integers(0, size, n)
        # Some indices repeated a lot (the tails), many a few times (the rounds).
        often = rng.integers(0, min(size, 3))
        indices = np.where(rng.random(n) < 0.4, often, indices).astype(np.int64)
        values = rng.random(n) * 2.0 + 0.01
        alpha = float(rng.random()) * 0.9 + 0.05 if op == "ema" else None
        weights = rng.random(size) + 0.1
        update = RunUpdate(
            epoch=0,
            rank=0,
            step=0,
            op=op,
            alpha=alpha,
            indices=indices,
            values=values,  # type: ignore[arg-type]
        )
        got = weights.copy()
        apply_update(got, update)
        want = _one_by_one(weights, indices, values, op, alpha or 0.0)
        assert got.tobytes() == want.tobytes()


def test_a_million_repeats_of_one_index_are_quick() -> None:
    n = 1_000_000
    for op, alpha in (("mul", None), ("ema", 0.5), ("set", None)):
        update = RunUpdate(
            epoch=0,
            rank=0,
            step=0,
            op=op,  # type: ignore[arg-type]
            alpha=alpha,
            indices=np.zeros(n, dtype=np.int64),
            values=np.full(n, 1.0000001),
        )
        started = time.process_time()
        update.check(10)  # groups the occurrences, before any lock is taken
        weights = np.ones(10)
        apply_update(weights, update)
        # O(n^2) took minutes; O(n log n) takes a fraction of a second (2 s: a busy machine).
        assert time.process_time() - started < 2.0, op


def test_a_heavy_repeated_update_over_http_is_quick_and_replays_quickly(api: TestClient) -> None:
    _run(api, "heavy")
    n = 1_000_000
    indices = np.arange(n, dtype=np.int64) % 3
    values = np.full(n, 1.0000001)
    started = time.perf_counter()
    response = api.post(
        "/v1/runs/heavy/updates",
        params={"epoch": 0, "op": "mul"},
        content=_binary(indices, values),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 202, response.text
    # A second update sorting before it makes the epoch replay (NOTE [Pending epoch state]).
    response = api.post(
        "/v1/runs/heavy/updates",
        json={"epoch": 0, "step": 0, "rank": 0, "op": "mul", "indices": [5], "values": [2.0]},
    )
    assert response.status_code == 202, response.text
    weights = api.get("/v1/runs/heavy/weights", params={"epoch": 1}).json()["weights"]
    assert time.perf_counter() - started < 10.0
    base = np.array([1 / 30] * 30 + [1 / 6] * 6 + [1 / 12] * 12)
    want = _one_by_one(base, indices, values, "mul", 0.0)
    want[5] *= 2.0
    assert np.array(weights).tobytes() == want.tobytes()


def test_deadline_stops_long_work_in_threads_started_under_it() -> None:
    stopped = threading.Event()

    def work() -> None:
        try:
            while True:
                check_deadline()
        except DeadlineExceeded:
            stopped.set()

    check_deadline()  # no deadline: nothing to check
    with deadline(0.05):
        import contextvars

        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(work,))
        thread.start()
    thread.join(5.0)
    assert stopped.is_set()


def test_a_timed_out_update_stops_and_stores_nothing(database_url: str) -> None:
    # A run of 1e6 samples with one update in each of 1000 epochs, none frozen: an update
    # of epoch 0 replays them all under the run's lock (300 epochs took 0.3 s here, as
    # long as the timeout: 1000 take seconds).
    labels = [i % 7 for i in range(1_000_000)]
    with TestClient(create_app(Settings(database_url=database_url))) as api:
        _run(api, "late", labels)
        store = api.app.state.runs.store  # type: ignore[attr-defined]
        with store.transaction("late") as tx:
            for epoch in range(1000):
                tx.add_update(
                    UpdateRecord(
                        seq=0,
                        epoch=epoch,
                        rank=0,
                        step=0,
                        op="mul",
                        alpha=None,
                        indices=np.array([epoch], "<i8").tobytes(),
                        values=np.array([1.5], "<f8").tobytes(),
                    )
                )
    settings = Settings(database_url=database_url, request_timeout_seconds=0.3)
    with TestClient(create_app(settings)) as api:
        api.get("/v1/runs/late")  # the plan is read before the clock matters
        cpu = time.process_time()
        response = api.post(
            "/v1/runs/late/updates",
            json={"epoch": 0, "op": "mul", "indices": [1], "values": [2.0], "update_id": "x"},
        )
        assert response.status_code == 504, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        # The worker stops at its next check of the deadline: soon nothing of this request
        # runs any more (without the checks it replayed for seconds after the 504).
        time.sleep(0.2)
        idle = time.process_time()
        time.sleep(1.0)
        assert time.process_time() - idle < 0.2, "a worker kept a core busy after the 504"
        assert time.process_time() - cpu < 5.0
    with TestClient(create_app(Settings(database_url=database_url))) as api:
        assert api.get("/v1/runs/late").json()["updates"] == 1000  # rolled back, not stored


def test_a_far_future_read_is_refused_and_freezes_nothing(api: TestClient) -> None:
    _run(api, "far")
    for path in ("indices", "weights"):
        response = api.get(f"/v1/runs/far/{path}", params={"epoch": 4294967295})
        assert response.status_code == 409, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"].endswith("epoch-not-reached")
        assert "epoch 1" in response.json()["detail"]
    assert api.get("/v1/runs/far").json()["frozen_epochs"] == []
    # The run goes on: updates are accepted, and its epochs are read in order.
    ok = api.post(
        "/v1/runs/far/updates", json={"epoch": 3, "op": "mul", "indices": [1], "values": [2.0]}
    )
    assert ok.status_code == 202, ok.text
    assert api.get("/v1/runs/far/indices", params={"epoch": 5}).status_code == 409
    assert api.get("/v1/runs/far/indices", params={"epoch": 4}).status_code == 200
    assert api.get("/v1/runs/far/indices", params={"epoch": 5}).status_code == 200
    assert api.get("/v1/runs/far/indices", params={"epoch": 7}).status_code == 409
    assert api.get("/v1/runs/far").json()["frozen_epochs"] == [4, 5]


def test_an_update_id_names_one_payload(api: TestClient) -> None:
    _run(api, "ids")
    body = {"epoch": 0, "op": "mul", "indices": [4], "values": [3.0], "update_id": "u-1"}
    assert api.post("/v1/runs/ids/updates", json=body).status_code == 202
    assert api.post("/v1/runs/ids/updates", json=body).status_code == 202  # a retry
    for change in ({"values": [3.5]}, {"indices": [5]}, {"step": 1}, {"op": "set"}, {"epoch": 1}):
        response = api.post("/v1/runs/ids/updates", json={**body, **change})
        assert response.status_code == 409, (change, response.text)
        assert response.json()["type"].endswith("update-id-conflict")
        assert "u-1" in response.json()["detail"]
    # The same payload in binary is the same update.
    binary = api.post(
        "/v1/runs/ids/updates",
        params={"epoch": 0, "op": "mul", "update_id": "u-1"},
        content=_binary(np.array([4]), np.array([3.0])),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert binary.status_code == 202, binary.text
    assert api.get("/v1/runs/ids").json()["updates"] == 1


def test_the_common_update_is_applied_before_the_run_lock(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NOTE [Pending epoch state]: an update that extends the epoch's state is applied
    (a copy and a check of every weight) before the run's lock is taken; under the lock
    only reads and writes run."""
    import sampleplan.core.runs as core_runs

    _run(api, "unlocked")
    runs = api.app.state.runs  # type: ignore[attr-defined]
    held = threading.local()
    applied_under_lock: list[bool] = []
    transaction, batch = runs.store.transaction, runs.store.batch

    def watched(open_lock):  # type: ignore[no-untyped-def]
        from contextlib import contextmanager

        @contextmanager
        def block(*args):  # type: ignore[no-untyped-def]
            with open_lock(*args) as tx:
                held.inside = True
                try:
                    yield tx
                finally:
                    held.inside = False

        return block

    original = core_runs.apply_updates

    def watched_apply(*args, **kwargs):  # type: ignore[no-untyped-def]
        applied_under_lock.append(getattr(held, "inside", False))
        return original(*args, **kwargs)

    # A run's lock is taken by its transaction, or by the batch of NOTE [Group commit].
    monkeypatch.setattr(runs.store, "transaction", watched(transaction))
    monkeypatch.setattr(runs.store, "batch", watched(batch))
    monkeypatch.setattr(core_runs, "apply_updates", watched_apply)
    for step in range(4):
        body = {"epoch": 0, "step": step, "op": "mul", "indices": [step], "values": [2.0]}
        assert api.post("/v1/runs/unlocked/updates", json=body).status_code == 202
    # The first update replays (no state yet); the next three extend it, outside the lock.
    assert applied_under_lock[0] is True
    assert applied_under_lock[1:] == [False, False, False]
    # An update refused by the state's check is refused the same way, storing nothing.
    bad = {"epoch": 0, "step": 9, "op": "set", "indices": list(range(48)), "values": [0.0] * 48}
    response = api.post("/v1/runs/unlocked/updates", json=bad)
    assert response.status_code == 422, response.text
    assert api.get("/v1/runs/unlocked").json()["updates"] == 4
    weights = api.get("/v1/runs/unlocked/weights", params={"epoch": 1}).json()["weights"]
    base = np.array([1 / 30] * 30 + [1 / 6] * 6 + [1 / 12] * 12)
    base[:4] *= 2.0
    assert np.array(weights).tobytes() == base.tobytes()
