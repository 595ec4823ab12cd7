"""How a run's frozen epochs are stored (NOTE [How frozen epochs are stored]), on SQLite
and PostgreSQL: derived from the updates with keyframes, bit for bit the weights of the
release that stored every frozen epoch whole; schema 2 -> 3; retention; deletion.

The expected weights are computed here from the update rule written out (NOTE [Run
updates]) and the streams are torch's WeightedRandomSampler on them.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from sampleplan.service import run_catalog
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from sampleplan.service.storage import store as store_module
from sampleplan.service.storage.runs import run_epochs, run_updates, runs
from tests.helpers import reference

# 40 s on a quiet machine (most of it the PostgreSQL cases): `make test` starts it early.
pytestmark = pytest.mark.long

LABELS = [0] * 300 + [1] * 40 + [2] * 160
SEED = 11


def drop_everything(url: str) -> None:
    engine = store_module.create_engine_for(url)
    store_module.metadata.drop_all(engine)
    engine.dispose()


@contextmanager
def service(url: str, **settings: Any) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=url, **settings))) as api:
        yield api


def make_run(api: TestClient, run_id: str, labels: list[int] = LABELS) -> str:
    plan = api.post("/v1/plans", json={"labels": labels, "seed": SEED})
    assert plan.status_code in (200, 201), plan.text
    plan_id: str = plan.json()["id"]
    assert api.put(f"/v1/runs/{run_id}", json={"plan_id": plan_id}).status_code in (200, 201)
    return plan_id


def inverse_frequency(labels: list[int] = LABELS) -> list[float]:
    counts = Counter(labels)
    return [1.0 / counts[t] for t in labels]


def an_update(rng: random.Random, epoch: int, size: int) -> dict[str, Any]:
    op = rng.choice(["set", "mul", "ema"])
    indices = rng.sample(range(size), rng.randint(1, 5))
    values = [rng.uniform(0.5, 2.0) for _ in indices]
    update: dict[str, Any] = {"epoch": epoch, "op": op, "indices": indices, "values": values}
    if op == "ema":
        update["alpha"] = 0.25
    return update


def apply(weights: list[float], update: dict[str, Any]) -> None:
    """NOTE [Run updates], written out: per position, in the order given."""
    for i, v in zip(update["indices"], update["values"], strict=True):
        if update["op"] == "set":
            weights[i] = v
        elif update["op"] == "mul":
            weights[i] = weights[i] * v
        else:
            alpha = update["alpha"]
            weights[i] = (1.0 - alpha) * weights[i] + alpha * v


def weights_of(api: TestClient, run_id: str, epoch: int) -> list[float]:
    answer = api.get(f"/v1/runs/{run_id}/weights", params={"epoch": epoch})
    assert answer.status_code == 200, answer.text
    weights: list[float] = answer.json()["weights"]
    return weights


def stored_rows(url: str, run_id: str) -> tuple[int, int, int]:
    """``(frozen epochs, keyframes with weights, updates)`` stored for ``run_id``."""
    engine = store_module.create_engine_for(url)
    try:
        with engine.connect() as conn:
            frozen = conn.execute(
                sa.select(sa.func.count()).where(run_epochs.c.run_id == run_id)
            ).scalar_one()
            whole = conn.execute(
                sa.select(sa.func.count()).where(
                    run_epochs.c.run_id == run_id, run_epochs.c.weights.is_not(None)
                )
            ).scalar_one()
            updates = conn.execute(
                sa.select(sa.func.count()).where(run_updates.c.run_id == run_id)
            ).scalar_one()
    finally:
        engine.dispose()
    return int(frozen), int(whole), int(updates)


EPOCHS = 150


def drive(api: TestClient, run_id: str, epochs: int = EPOCHS) -> list[list[float]]:
    """One or two small updates per epoch, each epoch frozen by a read as a trainer does;
    answers the expected weights of every epoch, from the rule written out."""
    rng = random.Random(5)
    expected = [inverse_frequency()]
    for epoch in range(epochs):
        assert weights_of(api, run_id, epoch) == expected[epoch]
        weights = expected[epoch][:]
        for _ in range(rng.randint(1, 2)):
            update = an_update(rng, epoch, len(LABELS))
            answer = api.post(f"/v1/runs/{run_id}/updates", json=update)
            assert answer.status_code == 202, answer.text
            apply(weights, update)
        expected.append(weights)
    return expected


def test_frozen_epochs_rebuilt_from_updates_are_bit_identical_to_whole_ones(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop_everything(database_url)
    # The way the previous release stored them: every updated frozen epoch whole.
    with monkeypatch.context() as patch:
        patch.setattr(run_catalog, "KEYFRAME_EVERY", 1)
        with service(database_url) as api:
            make_run(api, "whole")
            expected = drive(api, "whole")
    with service(database_url) as api:
        make_run(api, "derived")
        assert drive(api, "derived") == expected
    frozen, whole, _ = stored_rows(database_url, "whole")
    assert (frozen, whole) == (EPOCHS, EPOCHS - 1)  # epoch 0 is the plan's: nothing stored
    frozen, whole, updates = stored_rows(database_url, "derived")
    # Keyframes every 64 frozen epochs at least, and whenever the updates since the last
    # one reach an eighth of the weights' 4000 bytes (about every seventh epoch here).
    assert frozen == EPOCHS
    assert (EPOCHS - 1) // run_catalog.KEYFRAME_EVERY <= whole <= EPOCHS // 4
    assert EPOCHS <= updates <= 2 * EPOCHS
    # A fresh replica (nothing in memory) rebuilds every epoch from its keyframe.
    with service(database_url) as api:
        for epoch in (*range(EPOCHS), EPOCHS):
            assert weights_of(api, "derived", epoch) == weights_of(api, "whole", epoch)
            assert weights_of(api, "derived", epoch) == expected[epoch]
        for epoch in (1, 63, 64, 65, 130, EPOCHS - 1):
            page = api.get("/v1/runs/derived/indices", params={"epoch": epoch}).json()
            torch_stream = reference.weighted_stream(
                expected[epoch], len(LABELS), True, SEED + epoch
            )
            assert page["indices"] == torch_stream
            whole_page = api.get("/v1/runs/whole/indices", params={"epoch": epoch}).json()
            assert whole_page["indices"] == torch_stream


def test_a_run_of_a_million_samples_stores_little_per_frozen_epoch(
    database_url: str,
) -> None:
    """One small update per epoch: the stored bytes per frozen epoch stay under 200 KB
    (they were 8 MB, the whole float64 weights, before)."""
    drop_everything(database_url)
    size, epochs = 1_000_000, 130
    labels = [i % 10 for i in range(size)]
    with service(database_url) as api:
        make_run(api, "big", labels)
        catalog = api.app.state.runs  # type: ignore[attr-defined]
        for epoch in range(epochs):
            catalog.epoch_plan("big", epoch)  # frozen, as a trainer's first read does
            update = {"epoch": epoch, "op": "mul", "indices": [epoch, size - 1 - epoch]}
            update["values"] = [1.5, 0.5]
            assert api.post("/v1/runs/big/updates", json=update).status_code == 202
        last = catalog.epoch_plan("big", epochs)[1].weights
    engine = store_module.create_engine_for(database_url)
    try:
        with engine.connect() as conn:
            epoch_bytes = conn.execute(
                sa.select(
                    sa.func.coalesce(sa.func.sum(sa.func.length(run_epochs.c.weights)), 0)
                    + sa.func.sum(sa.func.length(run_epochs.c.weights_sha256))
                ).where(run_epochs.c.run_id == "big")
            ).scalar_one()
            update_bytes = conn.execute(
                sa.select(
                    sa.func.sum(
                        sa.func.length(run_updates.c.indices)
                        + sa.func.length(run_updates.c["values"])
                    )
                ).where(run_updates.c.run_id == "big")
            ).scalar_one()
    finally:
        engine.dispose()
    per_epoch = (int(epoch_bytes) + int(update_bytes)) / (epochs + 1)
    assert per_epoch <= 200_000, per_epoch
    # ... and a fresh replica reads the last epoch back, bit for bit.
    with service(database_url) as api:
        again = api.app.state.runs.epoch_plan("big", epochs)[1].weights  # type: ignore[attr-defined]
        assert again.tobytes() == last.tobytes()
        assert float(again[0]) == 1.0 / (size // 10) * 1.5
        assert float(again[size - 1]) == 1.0 / (size // 10) * 0.5


def test_a_version_2_database_with_runs_is_migrated_and_served_as_before(
    database_url: str,
) -> None:
    """Schema 2 stored every frozen epoch whole; after the migration they are keyframes,
    served as before, and the run goes on with derived epochs."""
    drop_everything(database_url)
    with service(database_url) as api:
        make_run(api, "old")
        for epoch in range(3):
            weights_of(api, "old", epoch)
            update = {"epoch": epoch, "op": "mul", "indices": [epoch], "values": [3.0]}
            assert api.post("/v1/runs/old/updates", json=update).status_code == 202
        before = [weights_of(api, "old", epoch) for epoch in range(4)]
    # Make it the version-2 database schema 2 wrote: every frozen epoch whole, no new
    # columns, no new index.
    engine = store_module.create_engine_for(database_url)
    with engine.begin() as conn:
        derived = conn.execute(
            sa.select(run_epochs.c.epoch).where(run_epochs.c.base_epoch.is_not(None))
        ).all()
        assert len(derived) == 3  # epochs 1 to 3 were stored as their updates
        for (epoch,) in derived:
            conn.execute(
                run_epochs.update()
                .where(run_epochs.c.run_id == "old", run_epochs.c.epoch == epoch)
                .values(weights=sa_float_bytes(before[epoch]))
            )
        conn.exec_driver_sql("DROP INDEX ix_run_updates_run_seq")
        conn.exec_driver_sql("ALTER TABLE run_epochs DROP COLUMN base_epoch")
        conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN kept_from")
        conn.execute(store_module.schema_version.update().values(version=2))
    engine.dispose()

    with service(database_url) as api:
        inspector_engine = store_module.create_engine_for(database_url)
        inspector = sa.inspect(inspector_engine)
        assert "base_epoch" in {c["name"] for c in inspector.get_columns("run_epochs")}
        assert "kept_from" in {c["name"] for c in inspector.get_columns("runs")}
        assert "ix_run_updates_run_seq" in {i["name"] for i in inspector.get_indexes("run_updates")}
        inspector_engine.dispose()
        assert api.app.state.catalog.store.current_schema_version() == store_module.SCHEMA_VERSION  # type: ignore[attr-defined]
        assert [weights_of(api, "old", epoch) for epoch in range(4)] == before
        update = {"epoch": 3, "op": "set", "indices": [5], "values": [7.0]}
        assert api.post("/v1/runs/old/updates", json=update).status_code == 202
        expected = before[3][:]
        expected[5] = 7.0
        assert weights_of(api, "old", 4) == expected
    assert stored_rows(database_url, "old")[:2] == (5, 3)
    with service(database_url) as api:  # epoch 4 rebuilt from the keyframe of epoch 3
        assert weights_of(api, "old", 4) == expected


def sa_float_bytes(weights: list[float]) -> bytes:
    import numpy as np

    return np.asarray(weights, dtype="<f8").tobytes()


def test_retention_keeps_the_latest_epochs_and_refuses_older_ones_with_410(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop_everything(database_url)
    monkeypatch.setattr(run_catalog, "KEYFRAME_EVERY", 4)
    with service(database_url, run_keep_epochs=3) as api:
        make_run(api, "kept")
        expected = drive(api, "kept", epochs=20)
        weights_of(api, "kept", 20)
        frozen = api.get("/v1/runs/kept").json()["frozen_epochs"]
        # The latest 3 and back to the keyframe at or before the first of them (epoch 18
        # is the first to keep; keyframes every 4th frozen epoch since the last: 4, 8, ...)
        assert frozen[-3:] == [18, 19, 20] and 3 <= len(frozen) <= 3 + 4 - 1
        assert frozen == list(range(frozen[0], 21))
        old = api.get("/v1/runs/kept/weights", params={"epoch": frozen[0] - 1})
        assert old.status_code == 410, old.text
        assert old.json()["type"].endswith("epoch-pruned")
        assert "no longer kept" in old.json()["detail"]
        assert api.get("/v1/runs/kept/indices", params={"epoch": 0}).status_code == 410
    _, _, updates = stored_rows(database_url, "kept")
    with service(database_url, run_keep_epochs=3) as api:  # a fresh replica rebuilds them
        for epoch in frozen:
            assert weights_of(api, "kept", epoch) == expected[epoch]
    engine = store_module.create_engine_for(database_url)
    with engine.connect() as conn:
        kept_from = conn.execute(
            sa.select(runs.c.kept_from).where(runs.c.id == "kept")
        ).scalar_one()
        oldest_update = conn.execute(
            sa.select(sa.func.min(run_updates.c.epoch)).where(run_updates.c.run_id == "kept")
        ).scalar_one()
    engine.dispose()
    assert kept_from == frozen[0] and oldest_update == frozen[0]
    assert updates <= 2 * (21 - frozen[0])


def test_deleting_a_run_deletes_its_rows_and_frees_its_id(database_url: str) -> None:
    drop_everything(database_url)
    with service(database_url) as api:
        make_run(api, "gone")
        drive(api, "gone", epochs=3)
        assert api.delete("/v1/runs/gone").status_code == 204
        assert stored_rows(database_url, "gone") == (0, 0, 0)
        for answer in (
            api.get("/v1/runs/gone"),
            api.get("/v1/runs/gone/weights", params={"epoch": 1}),
            api.get("/v1/runs/gone/indices", params={"epoch": 1}),
            api.post(
                "/v1/runs/gone/updates",
                json={"epoch": 3, "op": "set", "indices": [], "values": []},
            ),
            api.delete("/v1/runs/gone"),
        ):
            assert answer.status_code == 404, answer.text
            assert answer.json()["type"].endswith("run-not-found")
        assert api.delete("/v1/runs/no%20such").status_code == 422
        # The id is free again, for another plan: nothing of the first run is served.
        other = [0, 1] * 10
        make_run(api, "gone", other)
        assert weights_of(api, "gone", 1) == inverse_frequency(other)
        page = api.get("/v1/runs/gone/indices", params={"epoch": 1}).json()["indices"]
        assert page == reference.weighted_stream(inverse_frequency(other), 20, True, SEED + 1)
        assert api.get("/v1/runs/gone").json()["frozen_epochs"] == [1]


def test_updates_committed_together_are_each_decided_alone(database_url: str) -> None:
    """NOTE [Group commit]: 16 threads send updates to 4 runs at once, a third of them
    refused (a negative weight would result) or retried; the valid ones are all stored,
    once, in each run's (step, arrival) order, and the refused ones changed nothing."""
    import threading

    drop_everything(database_url)
    with service(database_url) as api:
        runs_ = [f"many-{i}" for i in range(4)]
        for run_id in runs_:
            make_run(api, run_id)
        answers: dict[str, int] = {}
        lock = threading.Lock()

        def send(thread: int) -> None:
            for k in range(12):
                run_id = runs_[(thread + k) % 4]
                bad = k % 3 == 2
                body = {
                    "epoch": 0,
                    "step": thread * 100 + k,
                    "op": "set",
                    "indices": [thread, 20 + k],
                    "values": [-1.0 if bad else 1.0 + thread, 2.0 + k],
                    "update_id": f"u{thread}-{k}",
                }
                status = api.post(f"/v1/runs/{run_id}/updates", json=body).status_code
                if k % 4 == 0:  # a retry of the same update: stored once
                    again = api.post(f"/v1/runs/{run_id}/updates", json=body).status_code
                    assert again == status
                with lock:
                    answers[f"{run_id}/{thread}/{k}"] = status

        threads = [threading.Thread(target=send, args=(t,)) for t in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for key, status in answers.items():
            k = int(key.rsplit("/", 1)[1])
            assert status == (422 if k % 3 == 2 else 202), key
        for run_id in runs_:
            accepted = sorted(
                (int(t) * 100 + int(k), int(t), int(k))
                for key, status in answers.items()
                if status == 202
                for r, t, k in [key.split("/")]
                if r == run_id
            )
            assert api.get(f"/v1/runs/{run_id}").json()["updates"] == len(accepted)
            expected = inverse_frequency()
            for _, thread, k in accepted:
                expected[thread] = 1.0 + thread
                expected[20 + k] = 2.0 + k
            assert weights_of(api, run_id, 1) == expected


def test_a_batch_whose_commit_fails_is_answered_503_and_stores_nothing(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from sampleplan.service.storage import runs as runs_module

    drop_everything(database_url)
    with service(database_url) as api:
        make_run(api, "fails")
        body = {"epoch": 0, "op": "set", "indices": [1], "values": [3.0], "update_id": "once"}

        def broken(self: object) -> None:
            raise OperationalError("UPDATE runs", {}, Exception("the disk is gone"))

        with monkeypatch.context() as patch:
            patch.setattr(runs_module.RunBatch, "flush", broken)
            failed = api.post("/v1/runs/fails/updates", json=body)
        assert failed.status_code == 503, failed.text
        assert stored_rows(database_url, "fails") == (0, 0, 0)
        assert api.get("/v1/runs/fails").json()["updates"] == 0
        # The sender retries with the same id: stored once, now.
        assert api.post("/v1/runs/fails/updates", json=body).status_code == 202
        assert api.post("/v1/runs/fails/updates", json=body).status_code == 202
        assert api.get("/v1/runs/fails").json()["updates"] == 1
        expected = inverse_frequency()
        expected[1] = 3.0
        assert weights_of(api, "fails", 1) == expected


def _add_the_version_3_plan_key(url: str) -> None:
    """Give ``runs.plan_id`` back the foreign key to ``plans`` that schema 3 had."""
    engine = store_module.create_engine_for(url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "ALTER TABLE runs ADD CONSTRAINT runs_plan_id_fkey "
                "FOREIGN KEY (plan_id) REFERENCES plans (id)"
            )
        else:  # SQLite adds no constraint to a table: its stored definition gets it
            conn.exec_driver_sql("PRAGMA writable_schema=ON")
            conn.exec_driver_sql(
                "UPDATE sqlite_master SET sql = replace(sql, 'plan_id VARCHAR(64) NOT NULL,', "
                "'plan_id VARCHAR(64) NOT NULL REFERENCES plans (id),') WHERE name = 'runs'"
            )
            conn.exec_driver_sql("PRAGMA writable_schema=OFF")
        conn.execute(store_module.schema_version.update().values(version=3))
    engine.dispose()
    engine = store_module.create_engine_for(url)
    keys = sa.inspect(engine).get_foreign_keys("runs")
    engine.dispose()
    assert [k["referred_table"] for k in keys] == ["plans"]


def test_a_version_3_database_with_runs_is_migrated_to_runs_over_mixtures(
    database_url: str,
) -> None:
    """Schema 4 drops the key from ``runs.plan_id`` to ``plans`` (SQLite: the table is made
    again): every run, update and frozen epoch is kept and served as before, and a run
    over a mixture plan can be made after."""
    drop_everything(database_url)
    with service(database_url) as api:
        make_run(api, "old")
        for epoch in range(3):
            weights_of(api, "old", epoch)
            update = {"epoch": epoch, "op": "mul", "indices": [epoch], "values": [3.0]}
            assert api.post("/v1/runs/old/updates", json=update).status_code == 202
        before = [weights_of(api, "old", epoch) for epoch in range(4)]
        dataset_id = api.post("/v1/datasets", json={"labels": LABELS}).json()["id"]
    rows = stored_rows(database_url, "old")
    _add_the_version_3_plan_key(database_url)
    with service(database_url) as api:
        assert api.app.state.catalog.store.current_schema_version() == 4  # type: ignore[attr-defined]
        assert stored_rows(database_url, "old") == rows
        assert [weights_of(api, "old", epoch) for epoch in range(4)] == before
        update = {"epoch": 3, "op": "set", "indices": [5], "values": [7.0]}
        assert api.post("/v1/runs/old/updates", json=update).status_code == 202
        mixture = api.post(
            "/v1/plans", json={"sources": [{"name": "a", "dataset_id": dataset_id, "weight": 1}]}
        ).json()
        made = api.put("/v1/runs/mixed", json={"plan_id": mixture["id"]})
        assert made.status_code == 201, made.text
        assert weights_of(api, "mixed", 0) == [1.0]
    engine = store_module.create_engine_for(database_url)
    inspector = sa.inspect(engine)
    assert inspector.get_foreign_keys("runs") == []
    assert "ix_runs_plan_id" in {i["name"] for i in inspector.get_indexes("runs")}
    assert {k["referred_table"] for k in inspector.get_foreign_keys("run_updates")} == {"runs"}
    engine.dispose()


def test_a_freeze_is_prepared_without_the_lock_and_redone_when_an_update_lands(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NOTE [Freezes prepared before the lock]: while epoch 1's weights are replayed, the
    run takes another update of epoch 0 (it could not while its lock was held); the
    frozen epoch holds it all the same, and a freeze nothing raced uses its draft."""
    drop_everything(database_url)
    with service(database_url) as api:
        catalog: run_catalog.RunCatalog = api.app.state.runs  # type: ignore[attr-defined]
        make_run(api, "raced")
        expected = inverse_frequency()
        first = {"epoch": 0, "op": "set", "indices": [3, 4], "values": [2.0, 0.5]}
        late = {"epoch": 0, "op": "mul", "indices": [4, 7], "values": [3.0, 0.25]}
        assert api.post("/v1/runs/raced/updates", json=first).status_code == 202
        catalog._pending.clear()  # as a replica that has not seen the run: it replays
        original = run_catalog.RunCatalog._draft_freeze
        drafts: list[bool] = []

        def racing(self: run_catalog.RunCatalog, run_id: str, plan: Any, epoch: int) -> Any:
            draft = original(self, run_id, plan, epoch)
            drafts.append(draft is not None)
            if epoch == 1:  # lands after the draft, before the lock: it must be in epoch 1
                update = run_catalog.RunUpdate(
                    epoch=0,
                    rank=0,
                    step=0,
                    op=run_catalog.parse_op("mul"),
                    alpha=None,
                    indices=np.array(late["indices"], dtype=np.int64),
                    values=np.array(late["values"], dtype=np.float64),
                )
                self.add_update(run_id, update)
            return draft

        monkeypatch.setattr(run_catalog.RunCatalog, "_draft_freeze", racing)
        apply(expected, first)
        apply(expected, late)
        assert weights_of(api, "raced", 1) == expected
        assert api.get("/v1/runs/raced").json()["updates"] == 2
        # Epoch 2, with nothing racing: its draft is what is frozen (replayed once, not
        # again under the lock), the same weights.
        catalog._frozen.clear()
        catalog._pending.clear()
        replays: list[int | None] = []
        replay = run_catalog.RunCatalog._replay

        def counted(self: run_catalog.RunCatalog, *args: Any, **kwargs: Any) -> Any:
            replays.append(args[2])
            return replay(self, *args, **kwargs)

        monkeypatch.setattr(run_catalog.RunCatalog, "_replay", counted)
        assert weights_of(api, "raced", 2) == expected
        assert drafts == [True, True] and replays == [2]
