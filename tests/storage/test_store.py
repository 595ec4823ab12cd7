"""The plan store against SQLite and a real PostgreSQL (``database_url`` runs each test on both)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import pytest
import sqlalchemy as sa

from sampleplan.service.errors import StorageUnavailable
from sampleplan.service.storage import DatasetRecord, PlanRecord, PlanStore
from sampleplan.service.storage import store as store_module

T = TypeVar("T")


def dataset(seed: int, size: int = 100, dtype: str = "<u1") -> DatasetRecord:
    codes = np.random.default_rng(seed).integers(0, 3, size=size).astype(dtype)
    return DatasetRecord(
        id=f"dataset-{seed}-{size}".ljust(64, "0"),
        label_kind="int",
        size=size,
        classes=[0, 1, 2],
        counts=np.bincount(codes, minlength=3).tolist(),
        codes_dtype=np.dtype(dtype).str,
        codes=codes.tobytes(),
    )


def plan(dataset_id: str, seed: int, weights: bytes | None = None) -> PlanRecord:
    return PlanRecord(
        id=f"plan-{dataset_id[:20]}-{seed}".ljust(64, "0"),
        dataset_id=dataset_id,
        config={"strategy": "inverse_frequency", "seed": seed, "split": None},
        versions={"algorithm_version": "torch-multinomial-v1", "torch": "2.13.0"},
        weights=weights,
    )


def drop_everything(url: str) -> None:
    """An empty database: the PostgreSQL one is shared by the whole session."""
    engine = store_module.create_engine_for(url)
    store_module.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def store(database_url: str) -> Iterator[PlanStore]:
    drop_everything(database_url)
    opened = PlanStore.open(database_url)
    try:
        yield opened
    finally:
        opened.close()


def in_threads(n: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(i)`` in ``n`` threads released together; results in order, errors re-raised."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return results


def test_writes_are_idempotent_and_read_back(store: PlanStore) -> None:
    ds = dataset(1)
    assert store.put_dataset(ds) is True
    assert store.put_dataset(ds) is False
    assert store.get_dataset(ds.id) == ds
    record = plan(ds.id, 7)
    assert store.put_plan(record) is True
    assert store.put_plan(record) is False
    assert store.get_plan(record.id) == record
    assert store.count() == (1, 1)
    assert store.get_plan("absent") is None and store.get_dataset("absent") is None


def test_a_plan_and_its_dataset_land_together(store: PlanStore) -> None:
    ds = dataset(2)
    assert store.put_plan_and_dataset(plan(ds.id, 1), ds) == (True, True)
    assert store.put_plan_and_dataset(plan(ds.id, 2), ds) == (True, False)
    assert store.put_plan_and_dataset(plan(ds.id, 2), ds) == (False, False)
    assert store.count() == (1, 2)


def test_a_failed_plan_write_leaves_no_dataset_behind(store: PlanStore) -> None:
    ds = dataset(3)
    # The plan names a dataset that does not exist: the database's foreign key refuses it
    # after the dataset row was inserted in the same transaction, which must roll back.
    orphan = plan("no-such-dataset".ljust(64, "0"), 1)
    with pytest.raises(sa.exc.IntegrityError):
        store.put_plan(orphan, dataset=ds)
    assert store.count() == (0, 0)
    assert store.get_dataset(ds.id) is None
    # The store is still usable afterwards.
    assert store.put_plan(plan(ds.id, 1), dataset=ds) is True


def test_concurrent_creation_of_one_plan_leaves_one_row(store: PlanStore) -> None:
    ds = dataset(4, size=50_000)
    record = plan(ds.id, 3)
    outcomes = in_threads(8, lambda _: store.put_plan_and_dataset(record, ds))
    assert sorted(outcomes) == [(False, False)] * 7 + [(True, True)]
    assert store.count() == (1, 1)
    assert store.get_plan(record.id) == record


def test_concurrent_creation_of_different_plans_keeps_them_all(store: PlanStore) -> None:
    ds = dataset(5)
    created = in_threads(8, lambda i: store.put_plan(plan(ds.id, i), dataset=ds))
    assert created == [True] * 8
    assert store.count() == (1, 8)


def test_large_arrays_round_trip_compressed(store: PlanStore, database_url: str) -> None:
    big = dataset(6, size=4_000_000, dtype="<u4")
    weights = np.random.default_rng(6).random(4_000_000).tobytes()
    assert store.put_plan(plan(big.id, 1, weights=weights), dataset=big)
    assert store.get_dataset(big.id) == big
    got = store.get_plan(plan(big.id, 1).id)
    assert got is not None and got.weights == weights
    # Three classes in 32-bit codes compress well: the column holds far less than the raw bytes.
    with store.engine.connect() as conn:
        stored = conn.execute(
            sa.select(sa.func.length(store_module.datasets.c.codes)).where(
                store_module.datasets.c.id == big.id
            )
        ).scalar_one()
    assert stored < len(big.codes) / 4


def test_the_schema_is_versioned(store: PlanStore, database_url: str) -> None:
    assert store.current_schema_version() == store_module.SCHEMA_VERSION
    again = PlanStore.open(database_url)  # a second start finds everything in place
    try:
        assert again.current_schema_version() == store_module.SCHEMA_VERSION
        with again.engine.connect() as conn:
            rows = conn.execute(
                sa.select(sa.func.count()).select_from(store_module.schema_version)
            ).scalar_one()
        assert rows == 1
    finally:
        again.close()


def test_replicas_starting_at_once_create_the_schema_once(database_url: str) -> None:
    drop_everything(database_url)
    stores = in_threads(6, lambda _: PlanStore.open(database_url))
    try:
        assert {s.current_schema_version() for s in stores} == {store_module.SCHEMA_VERSION}
        assert stores[0].put_dataset(dataset(7))
        assert all(s.count() == (1, 0) for s in stores)
    finally:
        for s in stores:
            s.close()


def test_a_database_from_before_versioning_is_migrated(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop_everything(database_url)
    engine = store_module.create_engine_for(database_url)
    # The first release's tables: everything but schema_version, with a row in them.
    old_tables = [store_module.datasets, store_module.plans]
    store_module.metadata.create_all(engine, tables=old_tables)
    PlanStore(engine).put_dataset(dataset(8))
    engine.dispose()

    # This "release" knows a version 2, whose step adds an index; it must run exactly once.
    steps: list[int] = []

    def to_v2(conn: sa.Connection) -> None:
        steps.append(2)
        conn.execute(sa.text("CREATE INDEX ix_datasets_size ON datasets (size)"))

    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(store_module, "MIGRATIONS", {2: to_v2})
    migrated = PlanStore.open(database_url)
    try:
        assert migrated.current_schema_version() == 2 and steps == [2]
        assert migrated.count() == (1, 0)  # the data survived
        assert "ix_datasets_size" in {
            ix["name"] for ix in sa.inspect(migrated.engine).get_indexes("datasets")
        }
    finally:
        migrated.close()
    PlanStore.open(database_url).close()
    assert steps == [2]

    # An older release refuses a database it does not understand, rather than corrupt it.
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 1)
    with pytest.raises(StorageUnavailable, match="newer than this release"):
        PlanStore.open(database_url)


def test_an_unreachable_database_is_storage_unavailable() -> None:
    with pytest.raises(StorageUnavailable, match="cannot open the database"):
        PlanStore.open("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")


def test_arrays_stored_by_the_previous_release_are_still_read(
    store: PlanStore, database_url: str
) -> None:
    # The previous release wrote zlib streams (level 1) with no header; this one must read
    # them as they are, whatever it writes itself.
    import zlib
    from datetime import datetime, timezone

    old = dataset(11, size=50_000, dtype="<u2")
    weights = np.random.default_rng(11).random(50_000).tobytes()
    now = datetime.now(timezone.utc)
    with store.engine.begin() as conn:
        conn.execute(
            store_module.datasets.insert().values(
                id=old.id,
                label_kind=old.label_kind,
                size=old.size,
                classes="[0, 1, 2]",
                counts=str(old.counts),
                codes_dtype=old.codes_dtype,
                codes=zlib.compress(old.codes, 1),
                created_at=now,
            )
        )
        record = plan(old.id, 3)
        conn.execute(
            store_module.plans.insert().values(
                id=record.id,
                dataset_id=old.id,
                config='{"seed": 3, "split": null, "strategy": "inverse_frequency"}',
                versions='{"algorithm_version": "torch-multinomial-v1", "torch": "2.13.0"}',
                weights=zlib.compress(weights, 1),
                created_at=now,
            )
        )
    assert store.get_dataset(old.id) == old
    got = store.get_plan(record.id)
    assert got is not None and got.weights == weights


@pytest.mark.parametrize(
    ("data", "codec"),
    [
        (b"", b"r"),
        (np.zeros(100_000, dtype="<u2").tobytes(), b"z"),
        (np.random.default_rng(1).random(100_000).tobytes(), b"r"),  # incompressible: raw
        (np.random.default_rng(2).integers(0, 1000, 500_000).astype("<u2").tobytes(), b"z"),
    ],
    ids=["empty", "constant", "random floats", "1000 classes"],
)
def test_blobs_are_zstd_when_it_pays_and_raw_otherwise(data: bytes, codec: bytes) -> None:
    blob = store_module.compress(data)
    assert blob[:4] == b"\x00SPB" and blob[4:5] == codec
    assert int.from_bytes(blob[5:13], "little") == len(data)
    assert store_module.decompress(blob) == data
    if codec == b"z":
        assert len(blob) <= 7 / 8 * len(data) + 13


def test_a_version_1_database_is_migrated_to_the_current_version(database_url: str) -> None:
    """The first release's database (its three tables, version 1, a zlib blob) gains the
    label-set, run, lengths and mixture tables (as schema 4 has them), keeps its data, and
    is then refused by a version-1 release."""
    import zlib
    from datetime import datetime, timezone

    drop_everything(database_url)
    engine = store_module.create_engine_for(database_url)
    first_release = [store_module.datasets, store_module.plans, store_module.schema_version]
    store_module.metadata.create_all(engine, tables=first_release)
    old = dataset(12, size=1_000)
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.execute(store_module.schema_version.insert().values(id=1, version=1, updated_at=now))
        conn.execute(
            store_module.datasets.insert().values(
                id=old.id,
                label_kind=old.label_kind,
                size=old.size,
                classes="[0, 1, 2]",
                counts=str(old.counts),
                codes_dtype=old.codes_dtype,
                codes=zlib.compress(old.codes, 1),
                created_at=now,
            )
        )
    engine.dispose()

    migrated = PlanStore.open(database_url)
    try:
        assert store_module.SCHEMA_VERSION == 4
        assert migrated.current_schema_version() == 4
        inspector = sa.inspect(migrated.engine)
        tables = set(inspector.get_table_names())
        assert {"dataset_label_sets", "runs", "run_updates", "run_epochs"} <= tables
        assert {"dataset_lengths", "mixture_plans"} <= tables
        assert "base_epoch" in {c["name"] for c in inspector.get_columns("run_epochs")}
        assert "kept_from" in {c["name"] for c in inspector.get_columns("runs")}
        assert migrated.get_dataset(old.id) == old
    finally:
        migrated.close()


def test_a_version_3_database_is_migrated_to_4_and_keeps_every_row(database_url: str) -> None:
    """Schema 4 adds ``dataset_lengths`` and ``mixture_plans``: a version-3 database (its
    tables without them) gains both, keeps its datasets and plans as they were, and takes
    token lengths and mixture plans after."""
    drop_everything(database_url)
    old_dataset = dataset(31)
    old_plan = plan(old_dataset.id, 4, weights=b"\x00" * 8 * 100)
    with _opened(database_url) as store:
        assert store.put_plan(old_plan, old_dataset)
    engine = store_module.create_engine_for(database_url)
    with engine.begin() as conn:
        store_module.metadata.drop_all(
            conn, tables=[store_module.dataset_lengths, store_module.mixture_plans]
        )
        conn.execute(store_module.schema_version.update().values(version=3))
    engine.dispose()

    with _opened(database_url) as migrated:
        assert migrated.current_schema_version() == 4
        tables = set(sa.inspect(migrated.engine).get_table_names())
        assert {"dataset_lengths", "mixture_plans"} <= tables
        assert migrated.get_dataset(old_dataset.id) == old_dataset
        assert migrated.get_plan(old_plan.id) == old_plan
        lengths = store_module.LengthsRecord(
            id="l" * 64,
            labels_id=old_dataset.id,
            total=6,
            lengths=b"".join(i.to_bytes(8, "little") for i in (1, 2, 3)),
        )
        assert migrated.put_lengths(lengths, old_dataset) == (True, False)
        assert migrated.get_lengths("l" * 64) == lengths
        mixture = store_module.MixturePlanRecord(
            id="m" * 64, config={"sources": [{"name": "a"}]}, versions={"algorithm": "mixture-v1"}
        )
        assert migrated.put_mixture_plan(mixture) and not migrated.put_mixture_plan(mixture)
        assert migrated.get_mixture_plan("m" * 64) == mixture
        assert migrated.get_plan("m" * 64) is None  # one namespace, two tables


@contextmanager
def _opened(url: str) -> Iterator[PlanStore]:
    opened = PlanStore.open(url)
    try:
        yield opened
    finally:
        opened.close()
