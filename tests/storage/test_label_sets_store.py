"""Label-set datasets in the store (SQLite and PostgreSQL): offsets in their own table."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import sqlalchemy as sa

from sampleplan.core.labels import labels_from_list
from sampleplan.core.labelsets import LabelSets, label_sets_from_list
from sampleplan.service.catalog import dataset_record, labels_from_record
from sampleplan.service.storage import PlanStore
from sampleplan.service.storage import store as store_module


@pytest.fixture
def store(database_url: str) -> Iterator[PlanStore]:
    engine = store_module.create_engine_for(database_url)
    store_module.metadata.drop_all(engine)
    engine.dispose()
    opened = PlanStore.open(database_url)
    try:
        yield opened
    finally:
        opened.close()


def test_label_sets_round_trip_and_single_labels_are_untouched(store: PlanStore) -> None:
    sets = label_sets_from_list([["cat", "dog"], [], ["emu"], ["dog", "cat", "cat"]])
    record = dataset_record(sets)
    assert store.put_dataset(record)
    assert not store.put_dataset(record)  # content-addressed: stored once
    back = store.get_dataset(record.id)
    assert back is not None and back.offsets is not None
    rebuilt = labels_from_record(back)
    assert isinstance(rebuilt, LabelSets)
    assert rebuilt.digest() == sets.digest() == record.id
    assert rebuilt.values() == sets.values()
    flat = labels_from_list([0, 1, 1])
    flat_record = dataset_record(flat)
    assert store.put_dataset(flat_record)
    flat_back = store.get_dataset(flat_record.id)
    assert flat_back is not None and flat_back.offsets is None
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(store_module.dataset_label_sets.c.dataset_id)).all()
    assert [r[0] for r in rows] == [record.id]
    # The datasets table keeps its columns (no ALTER): the offsets live beside it.
    assert "offsets" not in {c.name for c in store_module.datasets.columns}


def test_a_label_set_dataset_written_with_its_plan_is_one_transaction(store: PlanStore) -> None:
    sets = label_sets_from_list([[0, 1], [1], [2, 0]])
    record = dataset_record(sets)
    plan = store_module.PlanRecord(
        id="p".ljust(64, "0"),
        dataset_id=record.id,
        config={"split": None},
        versions={},
        weights=None,
    )
    assert store.put_plan_and_dataset(plan, record) == (True, True)
    back = store.get_dataset(record.id)
    assert back is not None and back.offsets is not None
    np.testing.assert_array_equal(np.frombuffer(back.offsets, dtype="<i8"), sets.offsets)
