"""A database that stops answering gives 503s within seconds, and recovery needs nothing.

PostgreSQL is reached through a relay (tests/helpers/relay.py) that can stop forwarding
while its connections stay open: the service's pooled connections and the new ones it
opens then get nothing back, as from a hung server. SQLite's equivalent is another
process holding the write lock. See NOTE [Database timeouts] in service/storage/store.py.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from sampleplan.service.config import Settings
from sampleplan.service.errors import StorageUnavailable
from sampleplan.service.main import create_app
from sampleplan.service.storage import PlanStore
from sampleplan.service.storage import store as store_module
from sampleplan.service.storage.store import DatabaseTimeouts
from tests.helpers.relay import Relay

#: What the issue asks of a silent database: a 503 within this many seconds.
SILENT_ANSWER_SECONDS = 5.0


def timed(call: object) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    answer = call()  # type: ignore[operator]
    return answer, time.monotonic() - start


def new_labels(seed: int) -> list[int]:
    return [seed % 7, 1, 2, 2, 3, 3, 3, seed]


def assert_storage_unavailable(answer: httpx.Response, seconds: float) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"].endswith("storage-unavailable")
    assert seconds < SILENT_ANSWER_SECONDS, seconds


def recovers(api: TestClient, seed: int, within: float = 10.0) -> float:
    """Seconds until /readyz and a write both succeed again."""
    start = time.monotonic()
    while True:
        ready = api.get("/readyz")
        if ready.status_code == 200:
            created = api.post("/v1/plans", json={"labels": new_labels(seed)})
            if created.status_code == 201:
                return time.monotonic() - start
        assert time.monotonic() - start < within, (ready.text, ready.status_code)
        time.sleep(0.1)


@pytest.fixture
def relayed_postgres(fresh_postgres_url: str) -> Iterator[tuple[str, Relay]]:
    url = sa.engine.make_url(fresh_postgres_url)
    with Relay((url.host or "127.0.0.1", url.port or 5432)) as relay:
        yield url.set(host="127.0.0.1", port=relay.port).render_as_string(False), relay


def test_a_silent_postgres_gives_503_within_seconds_and_recovers(
    relayed_postgres: tuple[str, Relay],
) -> None:
    url, relay = relayed_postgres
    with TestClient(create_app(Settings(database_url=url))) as api:
        assert api.get("/readyz").status_code == 200
        assert api.post("/v1/plans", json={"labels": new_labels(100)}).status_code == 201

        relay.pause()
        # The pooled connection's ping goes unanswered, then a new connection too.
        assert_storage_unavailable(*timed(lambda: api.get("/readyz")))
        # A database route: a new plan must be written.
        assert_storage_unavailable(
            *timed(lambda: api.post("/v1/plans", json={"labels": new_labels(101)}))
        )
        assert_storage_unavailable(*timed(lambda: api.get("/readyz")))

        relay.resume()
        assert recovers(api, 102) < 5.0


def test_a_silent_postgres_at_the_first_request_gives_503_within_seconds(
    relayed_postgres: tuple[str, Relay],
) -> None:
    """Silent before any request: only new connections, bounded by connect_timeout."""
    url, relay = relayed_postgres
    with TestClient(create_app(Settings(database_url=url))) as api:
        relay.pause()
        # Every connection the service opened at start-up is in the pool: drop them so
        # that the request must connect anew.
        api.app.state.catalog.store.engine.dispose()  # type: ignore[attr-defined]
        assert_storage_unavailable(
            *timed(lambda: api.post("/v1/datasets", json={"labels": new_labels(200)}))
        )
        relay.resume()
        assert recovers(api, 201) < 5.0


def test_a_statement_over_the_statement_timeout_is_a_503(postgres_url: str) -> None:
    """PostgreSQL enforces the statement timeout (and lock timeout) the settings give."""
    settings = Settings(database_url=postgres_url, database_statement_timeout_seconds=0.5)
    with TestClient(create_app(settings)) as api:
        store = api.app.state.catalog.store  # type: ignore[attr-defined]
        with store.engine.connect() as conn:
            timeout = conn.execute(sa.text("SHOW statement_timeout")).scalar_one()
            lock_timeout = conn.execute(sa.text("SHOW lock_timeout")).scalar_one()
        assert (timeout, lock_timeout) == ("500ms", "500ms")
        # Another session holds the plans table: the write waits for its lock, then fails.
        admin = sa.create_engine(postgres_url)
        try:
            with admin.begin() as held:
                held.execute(sa.text("LOCK TABLE plans IN ACCESS EXCLUSIVE MODE"))
                answer, seconds = timed(
                    lambda: api.post("/v1/plans", json={"labels": new_labels(300)})
                )
        finally:
            admin.dispose()
        assert_storage_unavailable(answer, seconds)
        assert seconds < 3.0
        assert api.post("/v1/plans", json={"labels": new_labels(300)}).status_code == 201


def test_a_locked_sqlite_gives_503_after_its_busy_timeout_and_recovers(tmp_path: Path) -> None:
    database = tmp_path / "sampleplan.sqlite3"
    settings = Settings(
        database_url=f"sqlite:///{database}", database_statement_timeout_seconds=1.0
    )
    with TestClient(create_app(settings)) as api:
        holder = sqlite3.connect(database, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # the write lock, held as a stuck writer would
            answer, seconds = timed(lambda: api.post("/v1/plans", json={"labels": new_labels(400)}))
            assert_storage_unavailable(answer, seconds)
            assert 0.9 <= seconds < 3.0
            # Reads do not need the lock (WAL).
            assert api.get("/readyz").status_code == 200
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert recovers(api, 401) < 2.0


def test_the_settings_reach_the_engine(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        database_statement_timeout_seconds=2.5,
        database_pool_timeout_seconds=3.0,
    )
    with TestClient(create_app(settings)) as api:
        engine = api.app.state.catalog.store.engine  # type: ignore[attr-defined]
        assert engine.pool._timeout == 3.0
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 2500


def test_a_postgres_silent_in_the_middle_of_a_statement_is_cut_off(
    relayed_postgres: tuple[str, Relay],
) -> None:
    """After its ping, a connection's statement and its commit are bounded too: past the
    statement timeout and a second of grace the watchdog shuts the socket down."""
    url, relay = relayed_postgres
    store = PlanStore.open(url, DatabaseTimeouts(statement=1.0))
    try:
        with pytest.raises(StorageUnavailable), store._connection() as conn:
            relay.pause()  # checked out and pinged: the statement is the first to wait
            started = time.monotonic()
            conn.execute(sa.text("SELECT 1"))
        assert 1.0 <= time.monotonic() - started < 3.0
        relay.resume()
        assert store.count() == (0, 0)

        with pytest.raises(StorageUnavailable), store._transaction() as conn:
            conn.execute(sa.text("SELECT 1"))
            relay.pause()  # the commit is what waits
            started = time.monotonic()
        assert 1.0 <= time.monotonic() - started < 3.0
        relay.resume()
        assert store.count() == (0, 0)
    finally:
        relay.resume()
        store.close()


def test_the_watchdog_leaves_answered_statements_alone(postgres_url: str) -> None:
    """A statement that answers within its time is never cut off, however many there are."""
    store = PlanStore.open(postgres_url, DatabaseTimeouts(statement=0.3))
    try:
        fired = store_module._WATCHDOG.fired
        for _ in range(50):
            store.count()
        with store._connection() as conn:
            time.sleep(0.8)  # idle, between statements: nothing to wait for
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        assert store_module._WATCHDOG.fired == fired
    finally:
        store.close()


def test_no_free_connection_in_time_is_a_503(database_url: str) -> None:
    """Every pooled connection held (by stuck requests, say): the next waits the pool
    timeout, then gets a 503 rather than queueing on."""
    store = PlanStore.open(database_url, DatabaseTimeouts(pool=0.3))
    held = []
    try:
        pool = store.engine.pool
        for _ in range(pool.size() + pool._max_overflow):  # type: ignore[attr-defined]
            held.append(store.engine.connect())
        for call in (store.count, store.ping):
            started = time.monotonic()
            with pytest.raises(StorageUnavailable):
                call()
            assert 0.3 <= time.monotonic() - started < 2.0
        held.pop().close()
        store.count()  # one came free: answered
    finally:
        for conn in held:
            conn.close()
        store.close()


def test_updates_queued_for_the_writer_of_a_silent_postgres_get_503_within_seconds(
    relayed_postgres: tuple[str, Relay],
) -> None:
    """NOTE [Group commit]: updates wait for the replica's one writer; when the database
    goes silent, those that queued behind a stuck batch are answered 503 in time too."""
    import threading

    url, relay = relayed_postgres
    with TestClient(create_app(Settings(database_url=url))) as api:
        plan = api.post("/v1/plans", json={"labels": new_labels(300)}).json()["id"]
        for r in range(4):
            assert api.put(f"/v1/runs/silent-{r}", json={"plan_id": plan}).status_code == 201
        relay.pause()
        answers: list[tuple[int, float]] = []

        def send(k: int) -> None:
            time.sleep(0.3 * (k % 4))  # some arrive while an earlier batch is stuck
            body = {"epoch": 0, "op": "set", "indices": [1], "values": [2.0], "update_id": f"s{k}"}
            answer, seconds = timed(lambda: api.post(f"/v1/runs/silent-{k % 4}/updates", json=body))
            answers.append((answer.status_code, seconds))

        threads = [threading.Thread(target=send, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(answers) == 8
        assert all(status == 503 for status, _ in answers), answers
        assert max(seconds for _, seconds in answers) < SILENT_ANSWER_SECONDS, answers
        relay.resume()
        assert recovers(api, 301) < 5.0
