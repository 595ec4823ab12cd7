"""Runs in the store: their plan, their updates, and the weights of their frozen epochs.

New tables beside ``datasets`` and ``plans`` (``metadata.create_all`` adds them to an
existing database). Weights of epochs are bytes here; the arithmetic is
:mod:`sampleplan.core.runs`, and the decisions are the run catalog's: it opens a
:meth:`RunStore.transaction`, reads what it needs through it, decides, writes through it,
and the ``with`` block commits. The store never calls back up.

NOTE [Run transactions]
    A freeze and an update of one run must not interleave: an update is accepted only
    while no later epoch is frozen, and a frozen epoch's weights must include every
    update accepted before it. So both run in one transaction that first locks the run:
    on PostgreSQL ``SELECT ... FOR UPDATE`` of the run's row, on SQLite ``BEGIN
    IMMEDIATE`` (the database's write lock). Whichever commits first wins; the other
    sees its effect (the update then gets 409, or the freeze includes the update). Any
    number of replicas may race; they serialise on the row. A batch of updates
    (:meth:`RunStore.batch`) locks each of its runs so, in the order of their ids, so
    that two batches never wait for each other in a cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from sampleplan.service.storage.store import _storage_errors, metadata

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    # A plan over one dataset (``plans``) or a mixture plan (``mixture_plans``): not a
    # foreign key since schema 4 (the catalog finds the plan before a run is made).
    sa.Column("plan_id", sa.String(64), nullable=False, index=True),
    # The latest frozen epoch (-1: none): updates for an earlier epoch are refused.
    sa.Column("max_frozen", sa.BigInteger, nullable=False),
    sa.Column("updates", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # The earliest epoch still kept (null: 0): the retention setting dropped the frozen
    # epochs and updates before it (NOTE [How frozen epochs are stored]). Schema 3.
    sa.Column("kept_from", sa.BigInteger, nullable=True),
)

run_updates = sa.Table(
    "run_updates",
    metadata,
    # Arrival order: assigned under the run's lock, so it is the order of acceptance.
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("run_id", sa.String(128), sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("rank", sa.BigInteger, nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("op", sa.String(8), nullable=False),
    sa.Column("alpha", sa.Float(precision=53), nullable=True),
    # Raw little-endian int64 and float64: losses and positions barely compress, and
    # compressing 1e5 of them costs more than the rest of an update together.
    sa.Column("indices", sa.LargeBinary, nullable=False),
    sa.Column("values", sa.LargeBinary, nullable=False),
    # Chosen by the sender, so that a retried request is stored once (null: none given).
    sa.Column("update_id", sa.String(64), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_run_updates_run_epoch", "run_id", "epoch"),
    # The run's latest update in O(log n) (schema 3): every update asks for it.
    sa.Index("ix_run_updates_run_seq", "run_id", "seq"),
    sa.UniqueConstraint("run_id", "update_id", name="uq_run_updates_update_id"),
)

run_epochs = sa.Table(
    "run_epochs",
    metadata,
    sa.Column("run_id", sa.String(128), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("epoch", sa.BigInteger, primary_key=True),
    # Raw little-endian float64 (read whole by the first page of the epoch on a replica
    # that has not seen it: no decompression on that path); null: the plan's weights
    # (no update before this epoch)
    sa.Column("weights", sa.LargeBinary, nullable=True),
    sa.Column("weights_sha256", sa.String(64), nullable=False),
    sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=False),
    # Null: a keyframe, whose ``weights`` are the epoch's (or the plan's when null).
    # Else the frozen epoch (-1: the plan) it was derived from by the updates of the
    # epochs between, which are kept: NOTE [How frozen epochs are stored]. Schema 3.
    sa.Column("base_epoch", sa.BigInteger, nullable=True),
)


# The statements every update makes, written once: building them with the expression
# language per call cost more than running them (issue 22: small updates under load).
# With the run, the largest seq and epoch of its updates (RunTransaction.update_totals).
_SELECT_RUN_SQL = (
    "SELECT id, plan_id, max_frozen, updates, created_at, kept_from, "
    "(SELECT max(seq) FROM run_updates WHERE run_id = :id) AS max_seq, "
    "(SELECT max(epoch) FROM run_updates WHERE run_id = :id) AS max_epoch "
    "FROM runs WHERE id = :id"
)
_SELECT_RUN = sa.text(_SELECT_RUN_SQL).columns(created_at=sa.DateTime(timezone=True))
_LOCK_RUN = sa.text(f"{_SELECT_RUN_SQL} FOR UPDATE").columns(created_at=sa.DateTime(timezone=True))
_HAS_UPDATE = sa.text("SELECT 1 FROM run_updates WHERE run_id = :run_id AND update_id = :update_id")
_STORED_UPDATE = sa.text(
    'SELECT seq, epoch, rank, step, op, alpha, indices, "values" FROM run_updates '
    "WHERE run_id = :run_id AND update_id = :update_id"
)
_UPDATE_TOTALS = sa.text(
    "SELECT (SELECT max(seq) FROM run_updates WHERE run_id = :run_id), "
    "(SELECT max(epoch) FROM run_updates WHERE run_id = :run_id)"
)
_INSERT_UPDATE = sa.text(
    'INSERT INTO run_updates (run_id, epoch, rank, step, op, alpha, indices, "values", '
    "update_id, created_at) VALUES (:run_id, :epoch, :rank, :step, :op, :alpha, :indices, "
    ":values, :update_id, :created_at) RETURNING seq"
).bindparams(
    sa.bindparam("indices", type_=sa.LargeBinary),
    sa.bindparam("values", type_=sa.LargeBinary),
    sa.bindparam("alpha", type_=sa.Float(precision=53)),
    sa.bindparam("created_at", type_=sa.DateTime(timezone=True)),
)
_COUNT_UPDATES = sa.text("UPDATE runs SET updates = updates + :added WHERE id = :id")
_FROZEN_EPOCHS = sa.text("SELECT epoch FROM run_epochs WHERE run_id = :run_id ORDER BY epoch")


@dataclass(frozen=True)
class RunRecord:
    id: str
    plan_id: str
    max_frozen: int
    updates: int
    created_at: datetime
    #: The earliest epoch kept (the retention setting dropped those before it).
    kept_from: int = 0


@dataclass(frozen=True)
class UpdateRecord:
    seq: int
    epoch: int
    rank: int
    step: int
    op: str
    alpha: float | None
    indices: bytes  # raw little-endian int64
    values: bytes  # raw little-endian float64
    update_id: str | None = None


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    weights: bytes | None  # raw little-endian float64; None: the plan's (or derived)
    weights_sha256: str
    #: None: a keyframe (``weights`` as above); else the frozen epoch (-1: the plan) the
    #: weights are derived from by the updates of the epochs between, and ``weights`` is
    #: None (NOTE [How frozen epochs are stored]).
    base_epoch: int | None = None

    @property
    def keyframe(self) -> bool:
        return self.base_epoch is None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _run(row: Any) -> RunRecord:
    return RunRecord(
        id=row["id"],
        plan_id=row["plan_id"],
        max_frozen=int(row["max_frozen"]),
        updates=int(row["updates"]),
        created_at=row["created_at"],
        kept_from=int(row["kept_from"] or 0),
    )


def _update(row: Any) -> UpdateRecord:
    return UpdateRecord(
        seq=int(row["seq"]),
        epoch=int(row["epoch"]),
        rank=int(row["rank"]),
        step=int(row["step"]),
        op=row["op"],
        alpha=None if row["alpha"] is None else float(row["alpha"]),
        indices=bytes(row["indices"]),
        values=bytes(row["values"]),
    )


class RunStore:
    """Runs, their updates and frozen epochs, in the plan store's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite has one writer at a time: this process's run transactions queue here, on
        # a lock that wakes the next one the moment it is free, rather than polling the
        # database's lock (its busy handler sleeps up to 100 ms between tries, which made
        # the p99 of small updates seconds long under 32 clients).
        self._writer = threading.Lock() if engine.dialect.name == "sqlite" else None

    # -- runs -----------------------------------------------------------------------------

    def create_run(self, run_id: str, plan_id: str) -> tuple[RunRecord, bool]:
        """The run ``run_id`` (made for ``plan_id`` if new); ``True`` if it was made now."""
        created_at = _now()
        values = {
            "id": run_id,
            "plan_id": plan_id,
            "max_frozen": -1,
            "updates": 0,
            "created_at": created_at,
            "kept_from": 0,
        }
        try:
            with _storage_errors(), self.engine.begin() as conn:
                conn.execute(runs.insert().values(**values))
            return RunRecord(run_id, plan_id, -1, 0, created_at), True
        except IntegrityError:
            # Made by someone else first (possibly on another replica): read it back.
            existing = self.get_run(run_id)
            if existing is None:  # pragma: no cover - a foreign key failure: plan vanished
                raise
            return existing, False

    def get_run(self, run_id: str) -> RunRecord | None:
        with _storage_errors(), self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).mappings().first()
        return _run(row) if row is not None else None

    def frozen_epochs(self, run_id: str) -> list[int]:
        with _storage_errors(), self.engine.connect() as conn:
            return [int(e) for e in conn.execute(_FROZEN_EPOCHS, {"run_id": run_id}).scalars()]

    def delete_run(self, run_id: str) -> bool:
        """Delete run ``run_id`` with its updates and frozen epochs; ``False``: no such run.

        Under the run's lock (NOTE [Run transactions]), so an update or a freeze racing
        the deletion either lands before it (and is deleted) or finds no run (404).
        """
        with self.transaction(run_id) as tx:
            if tx.run is None:
                return False
            tx.delete_run()
            return True

    # -- the unit of work -----------------------------------------------------------------

    @contextmanager
    def transaction(self, run_id: str) -> Iterator[RunTransaction]:
        """One transaction holding run ``run_id``'s lock: see NOTE [Run transactions].

        The caller reads through it, decides, and writes through it; it commits when the
        ``with`` block ends and rolls back, writing nothing, when the block raises.
        """
        with self._writer or nullcontext(), _storage_errors(), self.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                query = _SELECT_RUN
            else:
                query = _LOCK_RUN
            row = conn.execute(query, {"id": run_id}).mappings().first()
            tx = _locked(conn, run_id, row)
            yield tx
            tx.flush()

    @contextmanager
    def batch(self) -> Iterator[RunBatch]:
        """One transaction in which several runs are locked (:meth:`RunBatch.lock`, in the
        order of their ids, so that two batches never wait for each other) and written:
        many updates share one commit (NOTE [Group commit] in ``run_catalog.py``)."""
        with self._writer or nullcontext(), _storage_errors(), self.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            batch = RunBatch(conn)
            yield batch
            batch.flush()

    @contextmanager
    def snapshot(self, run_id: str) -> Iterator[RunReads]:
        """Reads of run ``run_id`` that all see one state of the database, without its lock
        (a frozen epoch's weights are rebuilt from what is final: nothing to decide)."""
        with _storage_errors(), self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN")  # WAL: the snapshot is taken at the first read
            else:
                conn.execution_options(isolation_level="REPEATABLE READ")
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).mappings().first()
            yield RunReads(conn, run_id, _run(row) if row is not None else None)
            # Leaving ``connect`` rolls the read-only transaction back.

    # -- epochs ---------------------------------------------------------------------------

    def get_epoch(self, run_id: str, epoch: int) -> EpochRecord | None:
        """Epoch ``epoch``'s record if it is frozen, outside any transaction."""
        with _storage_errors(), self.engine.connect() as conn:
            return _epoch(conn, run_id, epoch)


class RunBatch:
    """The transaction of :meth:`RunStore.batch`: each run locked in it is a
    :class:`RunTransaction` on the same connection, committed together."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._locked: list[RunTransaction] = []

    def flush(self) -> None:
        for tx in self._locked:
            tx.flush()

    def lock(self, run_id: str) -> RunTransaction:
        """Lock run ``run_id`` for the rest of the batch; ids must come in sorted order."""
        if self._locked and run_id <= self._locked[-1].run_id:
            raise RuntimeError("runs are locked in the order of their ids, each once")
        query = _SELECT_RUN if self._conn.dialect.name == "sqlite" else _LOCK_RUN
        row = self._conn.execute(query, {"id": run_id}).mappings().first()
        tx = _locked(self._conn, run_id, row)
        self._locked.append(tx)
        return tx


class RunReads:
    """What can be read of one run (:meth:`RunStore.snapshot`, and every transaction)."""

    def __init__(self, conn: Connection, run_id: str, run: RunRecord | None) -> None:
        self._conn = conn
        self.run_id = run_id
        self.run = run

    def epoch(self, epoch: int) -> EpochRecord | None:
        """Epoch ``epoch``'s record if it is frozen."""
        return _epoch(self._conn, self.run_id, epoch)

    def updates_between(self, first_epoch: int, stop_epoch: int) -> list[UpdateRecord]:
        """Updates of epochs ``[first_epoch, stop_epoch)``, in arrival order."""
        query = (
            sa.select(run_updates)
            .where(
                run_updates.c.run_id == self.run_id,
                run_updates.c.epoch >= first_epoch,
                run_updates.c.epoch < stop_epoch,
            )
            .order_by(run_updates.c.seq)
        )
        return [_update(row) for row in self._conn.execute(query).mappings()]

    def latest_frozen_before(self, epoch: int) -> int | None:
        """The latest frozen epoch before ``epoch`` (its weights are a base to replay from)."""
        query = sa.select(sa.func.max(run_epochs.c.epoch)).where(
            run_epochs.c.run_id == self.run_id, run_epochs.c.epoch < epoch
        )
        found = self._conn.execute(query).scalar()
        return None if found is None else int(found)

    def latest_keyframe_before(self, epoch: int) -> EpochRecord | None:
        """The latest keyframe (a frozen epoch stored whole) before ``epoch``."""
        query = (
            sa.select(run_epochs)
            .where(
                run_epochs.c.run_id == self.run_id,
                run_epochs.c.epoch < epoch,
                run_epochs.c.base_epoch.is_(None),
            )
            .order_by(run_epochs.c.epoch.desc())
            .limit(1)
        )
        row = self._conn.execute(query).mappings().first()
        return None if row is None else _epoch_record(row)

    def frozen_between(self, first_epoch: int, stop_epoch: int) -> int:
        """How many epochs of ``[first_epoch, stop_epoch)`` are frozen."""
        query = sa.select(sa.func.count()).where(
            run_epochs.c.run_id == self.run_id,
            run_epochs.c.epoch >= first_epoch,
            run_epochs.c.epoch < stop_epoch,
        )
        return int(self._conn.execute(query).scalar_one())

    def update_bytes_between(self, first_epoch: int, stop_epoch: int) -> int:
        """Bytes of the indices and values of the updates of ``[first_epoch, stop_epoch)``."""
        size = sa.func.length(run_updates.c.indices) + sa.func.length(run_updates.c["values"])
        query = sa.select(sa.func.coalesce(sa.func.sum(size), 0)).where(
            run_updates.c.run_id == self.run_id,
            run_updates.c.epoch >= first_epoch,
            run_updates.c.epoch < stop_epoch,
        )
        return int(self._conn.execute(query).scalar_one())


class RunTransaction(RunReads):
    """What one run's transaction reads and writes (:meth:`RunStore.transaction`).

    ``run`` is the locked run as this transaction leaves it (``None``: no such run; then
    nothing can be written). The store decides nothing: the run catalog does, between the
    reads and the writes.
    """

    def __init__(self, conn: Connection, run_id: str, run: RunRecord | None) -> None:
        super().__init__(conn, run_id, run)
        self._uncounted = 0
        self._totals: tuple[int, int] | None = None  # kept up to date by add_update

    # -- reads ----------------------------------------------------------------------------

    def frozen_epochs(self) -> list[int]:
        """The run's frozen epochs, in order (as :meth:`RunStore.frozen_epochs`)."""
        return [
            int(e) for e in self._conn.execute(_FROZEN_EPOCHS, {"run_id": self.run_id}).scalars()
        ]

    def has_update(self, update_id: str) -> bool:
        """Whether an update with this sender's id is stored (a retried request)."""
        found = self._conn.execute(_HAS_UPDATE, {"run_id": self.run_id, "update_id": update_id})
        return found.first() is not None

    def stored_update(self, update_id: str) -> UpdateRecord | None:
        """The update stored under this sender's id, if any (a retried request, or an id
        used again for another payload)."""
        found = self._conn.execute(_STORED_UPDATE, {"run_id": self.run_id, "update_id": update_id})
        row = found.mappings().first()
        return None if row is None else replace(_update(row), update_id=update_id)

    def update_totals(self) -> tuple[int, int]:
        """``(largest seq, largest epoch)`` of the run's updates (``(-1, -1)``: none)."""
        if self._totals is None:
            # Two subqueries, each answered from one end of an index.
            seq, epoch = self._conn.execute(_UPDATE_TOTALS, {"run_id": self.run_id}).one()
            self._totals = (-1 if seq is None else int(seq)), (-1 if epoch is None else int(epoch))
        return self._totals

    def last_key(self, epoch: int, at_least: tuple[int, int]) -> tuple[int, int]:
        """The largest ``(step, rank)`` among epoch ``epoch``'s updates and ``at_least``."""
        query = (
            sa.select(run_updates.c.step, run_updates.c.rank)
            .where(run_updates.c.run_id == self.run_id, run_updates.c.epoch == epoch)
            .order_by(run_updates.c.step.desc(), run_updates.c.rank.desc())
            .limit(1)
        )
        row = self._conn.execute(query).first()
        found = (int(row[0]), int(row[1])) if row is not None else at_least
        return max(found, at_least)

    # -- writes ---------------------------------------------------------------------------

    def add_update(self, update: UpdateRecord) -> int:
        """Store ``update`` (its ``seq`` is assigned here, and answered)."""
        run = self._locked_run()
        inserted = self._conn.execute(
            _INSERT_UPDATE,
            {
                "run_id": self.run_id,
                "epoch": update.epoch,
                "rank": update.rank,
                "step": update.step,
                "op": update.op,
                "alpha": update.alpha,
                "indices": update.indices,
                "values": update.values,
                "update_id": update.update_id,
                "created_at": _now(),
            },
        ).scalar_one()
        self._uncounted += 1  # written once for the transaction, by flush()
        if self._totals is not None:  # seqs grow: this one is the largest now
            self._totals = (int(inserted), max(self._totals[1], update.epoch))
        self.run = replace(run, updates=run.updates + 1)
        return int(inserted)

    def flush(self) -> None:
        """Write what is kept to be written once per transaction (the update count)."""
        if self._uncounted:
            self._conn.execute(_COUNT_UPDATES, {"id": self.run_id, "added": self._uncounted})
            self._uncounted = 0

    def freeze(self, record: EpochRecord) -> None:
        """Store epoch ``record.epoch`` as frozen (it must not be yet)."""
        run = self._locked_run()
        self._conn.execute(
            run_epochs.insert().values(
                run_id=self.run_id,
                epoch=record.epoch,
                weights=record.weights,
                weights_sha256=record.weights_sha256,
                frozen_at=_now(),
                base_epoch=record.base_epoch,
            )
        )
        if record.epoch > run.max_frozen:
            self._conn.execute(
                runs.update().where(runs.c.id == self.run_id).values(max_frozen=record.epoch)
            )
            self.run = replace(run, max_frozen=record.epoch)

    def drop_before(self, epoch: int) -> None:
        """Delete the frozen epochs and the updates of the epochs before ``epoch``, which
        must be a keyframe (the retention setting: NOTE [How frozen epochs are stored])."""
        run = self._locked_run()
        if epoch <= run.kept_from:
            return
        for table in (run_epochs, run_updates):
            self._conn.execute(
                table.delete().where(table.c.run_id == self.run_id, table.c.epoch < epoch)
            )
        self._conn.execute(runs.update().where(runs.c.id == self.run_id).values(kept_from=epoch))
        self.run = replace(run, kept_from=epoch)

    def delete_run(self) -> None:
        """Delete the run, its updates and its frozen epochs."""
        self._locked_run()
        for table in (run_epochs, run_updates):
            self._conn.execute(table.delete().where(table.c.run_id == self.run_id))
        self._conn.execute(runs.delete().where(runs.c.id == self.run_id))
        self.run = None

    def _locked_run(self) -> RunRecord:
        if self.run is None:
            raise RuntimeError(f"no run {self.run_id!r} to write to: check .run first")
        return self.run


def _locked(conn: Connection, run_id: str, row: Any) -> RunTransaction:
    """The transaction of run ``run_id``, whose row (with its update totals) is locked."""
    if row is None:
        return RunTransaction(conn, run_id, None)
    tx = RunTransaction(conn, run_id, _run(row))
    seq, epoch = row["max_seq"], row["max_epoch"]
    tx._totals = (-1 if seq is None else int(seq)), (-1 if epoch is None else int(epoch))
    return tx


def _epoch(conn: Connection, run_id: str, epoch: int) -> EpochRecord | None:
    query = sa.select(run_epochs).where(run_epochs.c.run_id == run_id, run_epochs.c.epoch == epoch)
    row = conn.execute(query).mappings().first()
    return None if row is None else _epoch_record(row)


def _epoch_record(row: Any) -> EpochRecord:
    blob = row["weights"]
    base = row["base_epoch"]
    return EpochRecord(
        epoch=int(row["epoch"]),
        weights=bytes(blob) if blob is not None else None,
        weights_sha256=row["weights_sha256"],
        base_epoch=None if base is None else int(base),
    )
