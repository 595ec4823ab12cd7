"""RunStore.transaction, the run catalog's unit of work, on SQLite and PostgreSQL: it
commits when its block ends, writes nothing when the block raises, and holds the run's
lock (NOTE [Run transactions]) for its whole length."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from sampleplan.service.storage import (
    DatasetRecord,
    EpochRecord,
    PlanRecord,
    PlanStore,
    RunStore,
    UpdateRecord,
)
from sampleplan.service.storage import store as store_module


@pytest.fixture
def runs(database_url: str) -> Iterator[RunStore]:
    engine = store_module.create_engine_for(database_url)
    store_module.metadata.drop_all(engine)  # the PostgreSQL database is the session's
    engine.dispose()
    plans = PlanStore.open(database_url)
    codes = np.zeros(4, dtype="<u1")
    plans.put_plan(
        PlanRecord(
            id="p" * 64,
            dataset_id="d" * 64,
            config={},
            versions={},
            weights=None,
        ),
        DatasetRecord(
            id="d" * 64,
            label_kind="int",
            size=4,
            classes=[0],
            counts=[4],
            codes_dtype="<u1",
            codes=codes.tobytes(),
        ),
    )
    store = RunStore(plans.engine)
    store.create_run("r", "p" * 64)
    try:
        yield store
    finally:
        plans.close()


def _update(epoch: int = 0, update_id: str | None = None) -> UpdateRecord:
    return UpdateRecord(
        seq=0,
        epoch=epoch,
        rank=0,
        step=0,
        op="set",
        alpha=None,
        indices=np.array([1], dtype="<i8").tobytes(),
        values=np.array([2.0], dtype="<f8").tobytes(),
        update_id=update_id,
    )


def test_writes_commit_when_the_block_ends(runs: RunStore) -> None:
    with runs.transaction("r") as tx:
        assert tx.run is not None and tx.run.updates == 0
        first = tx.add_update(_update(update_id="u-1"))
        second = tx.add_update(_update(epoch=1))
        assert second > first and tx.run.updates == 2
        assert tx.update_totals() == (second, 1)
        assert tx.has_update("u-1") and not tx.has_update("u-2")
        tx.freeze(EpochRecord(epoch=1, weights=None, weights_sha256="0" * 64))
        assert tx.run.max_frozen == 1
    record = runs.get_run("r")
    assert record is not None and (record.updates, record.max_frozen) == (2, 1)
    assert runs.get_epoch("r", 1) is not None and runs.frozen_epochs("r") == [1]
    with runs.transaction("r") as tx:
        assert [u.epoch for u in tx.updates_between(0, 2)] == [0, 1]
        assert tx.latest_frozen_before(5) == 1 and tx.latest_frozen_before(1) is None
        assert tx.last_key(0, (0, 0)) == (0, 0) and tx.last_key(0, (3, 1)) == (3, 1)


def test_a_block_that_raises_writes_nothing(runs: RunStore) -> None:
    with pytest.raises(ValueError, match="refused"), runs.transaction("r") as tx:
        tx.add_update(_update())
        tx.freeze(EpochRecord(epoch=0, weights=None, weights_sha256="0" * 64))
        raise ValueError("refused")
    record = runs.get_run("r")
    assert record is not None and (record.updates, record.max_frozen) == (0, -1)
    assert runs.get_epoch("r", 0) is None
    with runs.transaction("r") as tx:
        assert tx.updates_between(0, 10) == []


def test_no_such_run(runs: RunStore) -> None:
    with runs.transaction("nobody") as tx:
        assert tx.run is None
        with pytest.raises(RuntimeError, match=r"check \.run first"):
            tx.add_update(_update())


def test_the_run_stays_locked_until_the_block_ends(runs: RunStore) -> None:
    inside = threading.Event()
    order: list[str] = []

    def second() -> None:
        inside.wait(10)
        with runs.transaction("r") as tx:
            order.append("second")
            assert tx.run is not None and tx.run.updates == 1  # it sees the first's write

    thread = threading.Thread(target=second)
    thread.start()
    with runs.transaction("r") as tx:
        tx.add_update(_update())
        inside.set()
        time.sleep(0.5)  # the second transaction is waiting for the lock meanwhile
        order.append("first")
    thread.join(30)
    assert order == ["first", "second"]


def test_a_batch_inserts_its_updates_together_and_reads_them_back(runs: RunStore) -> None:
    """RunStore.batch keeps its updates until it commits (or a read of them needs them);
    meanwhile a second update sent under the same id finds the first."""
    runs.create_run("s", "p" * 64)
    with runs.batch() as many:
        first, second = many.lock(["r", "s"], {"u-1", "u-9"})
        assert first.run is not None and second.run is not None
        assert first.stored_update("u-1") is None and first.frozen_epochs() == []
        provisional = first.add_update(_update(update_id="u-1"))
        assert provisional < -1  # not stored yet: no stored seq can be negative
        again = first.stored_update("u-1")
        assert again is not None and again.update_id == "u-1" and again.indices == _update().indices
        second.add_update(_update(epoch=2))
        # A read of the updates writes what the batch kept first, in arrival order.
        assert [u.epoch for u in first.updates_between(0, 10)] == [0]
        assert first.update_totals()[0] == many.max_seqs["r"] > 0
        first.add_update(_update(epoch=1))
        assert first.run.updates == 2
    assert many.max_seqs["r"] > many.max_seqs["s"] > 0
    stored = {run_id: runs.get_run(run_id) for run_id in ("r", "s")}
    assert [(r.updates if r else None) for r in stored.values()] == [2, 1]
    with runs.transaction("r") as tx:
        assert [u.epoch for u in tx.updates_between(0, 10)] == [0, 1]
        assert tx.update_totals() == (many.max_seqs["r"], 1) and tx.has_update("u-1")
    with runs.batch() as many, pytest.raises(RuntimeError, match="order of their ids"):
        many.lock(["s", "r"])
    # One insert of many rows: their seqs follow the order the updates were added in,
    # which is the order a replay applies updates of one (epoch, step, rank) in.
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 0.5, 6.0, 7.0]
    with runs.batch() as many:
        (tx,) = many.lock(["s"])
        for value in values:
            tx.add_update(replace(_update(epoch=3), values=np.array([value], "<f8").tobytes()))
    with runs.transaction("s") as tx:
        stored = tx.updates_between(3, 4)
    assert [np.frombuffer(u.values, "<f8")[0] for u in stored] == values
    assert [u.seq for u in stored] == sorted(u.seq for u in stored)


def test_a_batch_costs_the_same_statements_for_one_update_as_for_forty(runs: RunStore) -> None:
    """NOTE [Run transactions]: a batch's round trips do not grow with its updates."""
    import sqlalchemy as sa

    runs.create_run("s", "p" * 64)

    def statements(updates: int, offset: int) -> int:
        seen: list[str] = []

        def count(*_: object) -> None:
            seen.append("")

        sa.event.listen(runs.engine, "before_cursor_execute", count)
        try:
            with runs.batch() as many:
                txs = many.lock(["r", "s"], {f"u-{offset + k}" for k in range(updates)})
                for k in range(updates):
                    txs[k % 2].add_update(_update(update_id=f"u-{offset + k}"))
        finally:
            sa.event.remove(runs.engine, "before_cursor_execute", count)
        return len(seen)

    assert statements(1, 0) == statements(40, 100)
    record = runs.get_run("r")
    assert record is not None and record.updates == 1 + 20


def test_update_totals_of_runs_among_others(runs: RunStore) -> None:
    """A run's latest update is its own, however many other runs' came after it (or none
    of its own came at all); on PostgreSQL read from the (run_id, seq) index alone."""
    for run_id in ("a", "s"):
        runs.create_run(run_id, "p" * 64)
    with runs.transaction("s") as tx:
        own = tx.add_update(_update(epoch=2))
    with runs.batch() as many:
        (tx,) = many.lock(["r"])
        for _ in range(5):
            tx.add_update(_update(epoch=4))
    for run_id, expected in (("a", (-1, -1)), ("s", (own, 2)), ("r", (many.max_seqs["r"], 4))):
        with runs.transaction(run_id) as one:
            assert one.update_totals() == expected, run_id
        with runs.batch() as batch:
            (locked,) = batch.lock([run_id])
            assert locked.update_totals() == expected, run_id
