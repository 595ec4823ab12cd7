"""RunStore.transaction, the run catalog's unit of work, on SQLite and PostgreSQL: it
commits when its block ends, writes nothing when the block raises, and holds the run's
lock (NOTE [Run transactions]) for its whole length."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

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
