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
    (:meth:`RunStore.batch`) locks all of its runs in one statement, ``ORDER BY id FOR
    UPDATE`` (PostgreSQL takes the rows' locks in that order), so that two batches never
    wait for each other in a cycle.
    On PostgreSQL the run's update totals (largest ``seq`` and epoch) are read by a
    statement of their own once the lock is held: a statement that waited for the lock
    keeps the snapshot it started with, whose subqueries would miss what the holder
    committed meanwhile. A batch's other reads are one statement each for all of its
    runs (the updates stored under its update ids, the frozen epochs), and its inserts
    one multi-row ``INSERT ... RETURNING`` when it commits (earlier if a read of the
    run's updates needs them): the round trips of a batch do not grow with its updates.
    On PostgreSQL the lock and the reads go in one round trip (NOTE [Pipelined statements]
    in ``store.py``).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from sampleplan.service.storage.generation import RunGeneration, run_generation_for
from sampleplan.service.storage.store import _storage_errors, metadata, pipelined

logger = logging.getLogger(__name__)

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
# PostgreSQL: the lock alone; the totals are read once it is held (NOTE [Run transactions]).
_LOCK_RUN = sa.text(
    "SELECT id, plan_id, max_frozen, updates, created_at, kept_from FROM runs WHERE id = :id "
    "FOR UPDATE"
).columns(created_at=sa.DateTime(timezone=True))
# A batch's runs, in one statement: SQLite (the database's write lock is held already)
# with their totals; PostgreSQL locked in the order of their ids, the totals after.
_SELECT_RUNS = (
    sa.text(
        "SELECT id, plan_id, max_frozen, updates, created_at, kept_from, "
        "(SELECT max(seq) FROM run_updates WHERE run_id = runs.id) AS max_seq, "
        "(SELECT max(epoch) FROM run_updates WHERE run_id = runs.id) AS max_epoch "
        "FROM runs WHERE id IN :ids"
    )
    .bindparams(sa.bindparam("ids", expanding=True))
    .columns(created_at=sa.DateTime(timezone=True))
)
# PostgreSQL's planner answers ``max(seq) ... WHERE run_id = x`` by walking the primary
# key backwards until a row of the run turns up: through every update made since the
# run's last one (EXPLAIN ANALYZE, 100 000 updates of 8 busy runs since an idle run's
# last: all of them read, 12 ms, for the idle run). A row comparison that only the
# (run_id, seq) index can answer makes it read one index entry: the last at or before
# (x, the largest seq), whose run is x's if x has any update.
_LAST_SEQ_PG = (
    "(SELECT CASE WHEN u.run_id = {run} THEN u.seq END FROM run_updates u "
    "WHERE (u.run_id, u.seq) <= ({run}, 9223372036854775807) "
    "ORDER BY u.run_id DESC, u.seq DESC LIMIT 1)"
)
_STORED_UPDATES = sa.text(
    'SELECT run_id, update_id, seq, epoch, rank, step, op, alpha, indices, "values" '
    "FROM run_updates WHERE run_id IN :runs AND update_id IN :update_ids"
).bindparams(sa.bindparam("runs", expanding=True), sa.bindparam("update_ids", expanding=True))
_RUNS_FROZEN = sa.text(
    "SELECT run_id, epoch FROM run_epochs WHERE run_id IN :ids ORDER BY run_id, epoch"
).bindparams(sa.bindparam("ids", expanding=True))
_HAS_UPDATE = sa.text("SELECT 1 FROM run_updates WHERE run_id = :run_id AND update_id = :update_id")
_STORED_UPDATE = sa.text(
    'SELECT seq, epoch, rank, step, op, alpha, indices, "values" FROM run_updates '
    "WHERE run_id = :run_id AND update_id = :update_id"
)
_UPDATE_TOTALS = sa.text(
    "SELECT (SELECT max(seq) FROM run_updates WHERE run_id = :run_id), "
    "(SELECT max(epoch) FROM run_updates WHERE run_id = :run_id)"
)
_UPDATE_TOTALS_PG = sa.text(
    f"SELECT {_LAST_SEQ_PG.format(run='CAST(:run_id AS VARCHAR)')}, "
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
# Every update a batch keeps, in one statement (SQLAlchemy renders one multi-row VALUES).
_INSERT_UPDATES = run_updates.insert().returning(run_updates.c.run_id, run_updates.c.seq)
# PostgreSQL: the same as one array per column, so that the statement's text is the same
# whatever the batch's size (psycopg parses a text over 4 KB anew on every execution: 5 %
# of the replica's CPU under 32 clients of small updates, profiled). The rows come out of
# unnest in the arrays' order, and seqs are drawn in that order.
_UPDATE_COLUMNS = (
    ("run_id", "text"),
    ("epoch", "bigint"),
    ("rank", "bigint"),
    ("step", "bigint"),
    ("op", "text"),
    ("alpha", "double precision"),
    ("indices", "bytea"),
    ("values", "bytea"),
    ("update_id", "text"),
    ("created_at", "timestamptz"),
)
_INSERT_UPDATES_PG = (
    "INSERT INTO run_updates ("
    + ", ".join(f'"{name}"' for name, _ in _UPDATE_COLUMNS)
    + ") SELECT "
    + ", ".join(f'"{name}"' for name, _ in _UPDATE_COLUMNS)
    + " FROM unnest("
    + ", ".join(f"%({name})s::{kind}[]" for name, kind in _UPDATE_COLUMNS)
    + ") WITH ORDINALITY AS batch("
    + ", ".join(f'"{name}"' for name, _ in _UPDATE_COLUMNS)
    + ", position) ORDER BY position RETURNING run_id, seq"
)
_FROZEN_EPOCHS = sa.text("SELECT epoch FROM run_epochs WHERE run_id = :run_id ORDER BY epoch")
# A batch's reads on PostgreSQL, sent in one pipeline (NOTE [Pipelined statements] in
# ``store.py``): psycopg's parameters, each list one array, so that every text is the
# same whatever the batch (psycopg prepares a text it has run five times).
_LOCK_RUNS_PG = (
    "SELECT id, plan_id, max_frozen, updates, created_at, kept_from FROM runs "
    "WHERE id = ANY(%(ids)s::text[]) ORDER BY id FOR UPDATE"
)
_RUNS_TOTALS_PG = (
    f"SELECT id, {_LAST_SEQ_PG.format(run='runs.id')}, "
    "(SELECT max(epoch) FROM run_updates WHERE run_id = runs.id) FROM runs "
    "WHERE id = ANY(%(ids)s::text[])"
)
_STORED_UPDATES_PG = (
    'SELECT run_id, update_id, seq, epoch, rank, step, op, alpha, indices, "values" '
    "FROM run_updates WHERE run_id = ANY(%(ids)s::text[]) "
    "AND update_id = ANY(%(update_ids)s::text[])"
)
_RUNS_FROZEN_PG = (
    "SELECT run_id, epoch FROM run_epochs WHERE run_id = ANY(%(ids)s::text[]) "
    "ORDER BY run_id, epoch"
)
_RUN_COLUMNS = ("id", "plan_id", "max_frozen", "updates", "created_at", "kept_from")
_STORED_COLUMNS = (
    "run_id",
    "update_id",
    "seq",
    "epoch",
    "rank",
    "step",
    "op",
    "alpha",
    "indices",
    "values",
)


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
        #: Advanced around every deletion of a run or drop of its epochs, where every
        #: process of the database sees it without a query (NOTE [The runs' generation]);
        #: ``None`` on PostgreSQL.
        self.generation = run_generation_for(engine)

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
        tx: RunTransaction | None = None
        try:
            with self._writer or nullcontext(), _storage_errors(), self.engine.begin() as conn:
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    query = _SELECT_RUN
                else:
                    query = _LOCK_RUN
                row = conn.execute(query, {"id": run_id}).mappings().first()
                tx = _locked(conn, run_id, row)
                tx.generation = self.generation
                yield tx
                tx.flush()
        finally:
            # Once it has committed or rolled back (NOTE [The runs' generation]). A failure
            # here leaves the change under way for good: run pages then read the run.
            if tx is not None and tx.ends and self.generation is not None:
                try:
                    self.generation.end()
                except Exception:
                    logger.exception("the runs' generation could not mark a change ended")

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
            # On PostgreSQL the commit goes with it (the ``with`` has nothing left to commit).
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
    :class:`RunTransaction` on the same connection, committed together.

    Its updates are inserted together, by :meth:`flush` (or before a read of the runs'
    updates needs them); until then each has a provisional ``seq`` (negative, never a
    stored one), and :attr:`max_seqs` holds each run's largest stored ``seq`` after.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._locked: list[RunTransaction] = []
        self._unwritten: list[dict[str, Any]] = []
        self._provisional = 0
        #: Each run's largest ``seq`` among the updates this batch has inserted.
        self.max_seqs: dict[str, int] = {}

    def flush(self) -> None:
        """Insert the batch's updates, and write each run's update count: two statements,
        one after the other (not pipelined: NOTE [Pipelined statements] in ``store.py``)."""
        self.write_updates()
        counted = [{"id": tx.run_id, "added": tx._take_uncounted()} for tx in self._locked]
        counted = [count for count in counted if count["added"]]
        if counted:
            self._conn.execute(_COUNT_UPDATES, counted)

    def lock(self, run_ids: list[str], update_ids: set[str] | None = None) -> list[RunTransaction]:
        """Lock runs ``run_ids`` (sorted, each once) for the rest of the batch, in one
        statement; ``update_ids``: the ids the batch's updates were sent with, whose stored
        updates are read now, in one statement too (NOTE [Run transactions])."""
        if self._locked or any(a >= b for a, b in itertools.pairwise(run_ids)):
            raise RuntimeError("a batch locks its runs once, in the order of their ids")
        if not run_ids:
            return []
        conn = self._conn
        sqlite = conn.dialect.name == "sqlite"
        totals: dict[str, tuple[Any, Any]] = {}
        rows: dict[str, Any]
        frozen_rows: list[Any]
        if sqlite:
            rows = {
                row["id"]: row for row in conn.execute(_SELECT_RUNS, {"ids": run_ids}).mappings()
            }
            found = sorted(rows)
            stored_rows: list[Any] = []
            if found and update_ids:
                params = {"runs": found, "update_ids": sorted(update_ids)}
                stored_rows = list(conn.execute(_STORED_UPDATES, params).mappings())
            frozen_rows = list(conn.execute(_RUNS_FROZEN, {"ids": found})) if found else []
        else:
            # One round trip (NOTE [Pipelined statements] in ``store.py``): the lock first,
            # then, each statement with a snapshot of its own taken once the locks are
            # held, what the batch reads. A run not found has no rows in any of them.
            statements = [(_LOCK_RUNS_PG, {"ids": run_ids}), (_RUNS_TOTALS_PG, {"ids": run_ids})]
            statements.append((_RUNS_FROZEN_PG, {"ids": run_ids}))
            if update_ids:
                params = {"ids": run_ids, "update_ids": sorted(update_ids)}
                statements.append((_STORED_UPDATES_PG, params))
            results = pipelined(conn, statements)
            rows = {row[0]: dict(zip(_RUN_COLUMNS, row, strict=True)) for row in results[0]}
            found = sorted(rows)
            totals = {r[0]: (r[1], r[2]) for r in results[1] if r[0] in rows}
            frozen_rows = [r for r in results[2] if r[0] in rows]
            stored_rows = [
                dict(zip(_STORED_COLUMNS, row, strict=True))
                for row in (results[3] if update_ids else [])
                if row[0] in rows
            ]
        stored: dict[str, dict[str, UpdateRecord]] = {run_id: {} for run_id in found}
        for row in stored_rows:
            record = replace(_update(row), update_id=row["update_id"])
            stored[row["run_id"]][row["update_id"]] = record
        frozen: dict[str, list[int]] = {run_id: [] for run_id in found}
        for run_id, epoch in frozen_rows:
            frozen[run_id].append(int(epoch))
        for run_id in run_ids:
            found_row = rows.get(run_id)
            tx = RunTransaction(
                conn, run_id, None if found_row is None else _run(found_row), batch=self
            )
            if found_row is not None:
                seq, epoch = (
                    (found_row["max_seq"], found_row["max_epoch"]) if sqlite else totals[run_id]
                )
                tx._totals = (
                    (-1 if seq is None else int(seq)),
                    (-1 if epoch is None else int(epoch)),
                )
                tx._stored = (update_ids or set(), stored[run_id])
                tx._frozen = frozen[run_id]
            self._locked.append(tx)
        return list(self._locked)

    def _defer(self, tx: RunTransaction, values: dict[str, Any]) -> int:
        """Keep an update's row to insert with the batch's; its provisional ``seq``."""
        self._unwritten.append(values)
        self._provisional -= 1
        return self._provisional - 1  # -2, -3, ...: never a stored seq, nor the -1 of none

    def write_updates(self) -> None:
        """Insert the updates kept so far, in one statement (arrival order is ``seq`` order)."""
        if not self._unwritten:
            return
        rows, self._unwritten = self._unwritten, []
        if self._conn.dialect.name == "postgresql":
            columns = {name: [row[name] for row in rows] for name, _ in _UPDATE_COLUMNS}
            inserted = self._conn.exec_driver_sql(_INSERT_UPDATES_PG, columns)
        else:
            inserted = self._conn.execute(_INSERT_UPDATES, rows)
        for run_id, seq in inserted:
            self.max_seqs[run_id] = max(int(seq), self.max_seqs.get(run_id, -1))
        for tx in self._locked:
            if tx.run_id in self.max_seqs and tx._totals is not None:
                tx._totals = (self.max_seqs[tx.run_id], tx._totals[1])


class RunReads:
    """What can be read of one run (:meth:`RunStore.snapshot`, and every transaction)."""

    def __init__(self, conn: Connection, run_id: str, run: RunRecord | None) -> None:
        self._conn = conn
        self.run_id = run_id
        self.run = run

    def epoch(self, epoch: int) -> EpochRecord | None:
        """Epoch ``epoch``'s record if it is frozen."""
        return _epoch(self._conn, self.run_id, epoch)

    def _reading_updates(self) -> None:
        """Called before a read of ``run_updates``: a batch writes what it kept first."""

    def updates_between(self, first_epoch: int, stop_epoch: int) -> list[UpdateRecord]:
        """Updates of epochs ``[first_epoch, stop_epoch)``, in arrival order."""
        self._reading_updates()
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

    def update_totals(self) -> tuple[int, int]:
        """``(largest seq, largest epoch)`` of the run's updates (``(-1, -1)``: none)."""
        self._reading_updates()
        # Two subqueries, each answered from one end of an index.
        query = _UPDATE_TOTALS if self._conn.dialect.name == "sqlite" else _UPDATE_TOTALS_PG
        seq, epoch = self._conn.execute(query, {"run_id": self.run_id}).one()
        return (-1 if seq is None else int(seq)), (-1 if epoch is None else int(epoch))

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
        self._reading_updates()
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

    def __init__(
        self,
        conn: Connection,
        run_id: str,
        run: RunRecord | None,
        batch: RunBatch | None = None,
    ) -> None:
        super().__init__(conn, run_id, run)
        self._batch = batch  # in a batch, updates are inserted with the batch's
        self._uncounted = 0
        self._totals: tuple[int, int] | None = None  # kept up to date by add_update
        # Read by the batch up front (RunBatch.lock): the updates stored under the ids it
        # asked for (and those ids), and the frozen epochs; None: read when asked.
        self._stored: tuple[set[str], dict[str, UpdateRecord]] | None = None
        self._frozen: list[int] | None = None
        # Updates added by this transaction under a sender's id.
        self._added: dict[str, UpdateRecord] = {}
        #: The runs' generation, advanced before this transaction deletes the run or drops
        #: epochs (and by the store once it ends): NOTE [The runs' generation].
        self.generation: RunGeneration | None = None
        self.ends = False

    def _ending(self) -> None:
        """Before a write that ends what a read of the run found (not yet committed)."""
        if self._batch is not None:
            # Its store would not advance the runs' generation once the batch ends.
            raise RuntimeError("a batch of updates deletes no run and drops no epoch")
        if not self.ends:
            self.ends = True
            if self.generation is not None:
                self.generation.begin()

    def _reading_updates(self) -> None:
        if self._batch is not None:
            self._batch.write_updates()

    # -- reads ----------------------------------------------------------------------------

    def frozen_epochs(self) -> list[int]:
        """The run's frozen epochs, in order (as :meth:`RunStore.frozen_epochs`)."""
        if self._frozen is not None:
            return list(self._frozen)
        return [
            int(e) for e in self._conn.execute(_FROZEN_EPOCHS, {"run_id": self.run_id}).scalars()
        ]

    def has_update(self, update_id: str) -> bool:
        """Whether an update with this sender's id is stored (a retried request)."""
        if update_id in self._added:
            return True
        self._reading_updates()
        found = self._conn.execute(_HAS_UPDATE, {"run_id": self.run_id, "update_id": update_id})
        return found.first() is not None

    def stored_update(self, update_id: str) -> UpdateRecord | None:
        """The update stored under this sender's id, if any (a retried request, or an id
        used again for another payload)."""
        if update_id in self._added:
            return self._added[update_id]
        if self._stored is not None and update_id in self._stored[0]:
            return self._stored[1].get(update_id)
        self._reading_updates()
        found = self._conn.execute(_STORED_UPDATE, {"run_id": self.run_id, "update_id": update_id})
        row = found.mappings().first()
        return None if row is None else replace(_update(row), update_id=update_id)

    def update_totals(self) -> tuple[int, int]:
        """``(largest seq, largest epoch)`` of the run's updates (``(-1, -1)``: none)."""
        if self._totals is None:
            self._totals = super().update_totals()
        return self._totals

    def last_key(self, epoch: int, at_least: tuple[int, int]) -> tuple[int, int]:
        """The largest ``(step, rank)`` among epoch ``epoch``'s updates and ``at_least``."""
        self._reading_updates()
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
        """Store ``update``; its ``seq``, assigned here (in a batch: provisional, a negative
        number, until the batch inserts it: :class:`RunBatch`)."""
        run = self._locked_run()
        values = {
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
        }
        if self._batch is not None:
            inserted = self._batch._defer(self, values)
        else:
            inserted = self._conn.execute(_INSERT_UPDATE, values).scalar_one()
        if update.update_id is not None:
            self._added[update.update_id] = replace(update, seq=int(inserted))
        self._uncounted += 1  # written once for the transaction, by flush()
        if self._totals is not None:  # seqs grow: this one is the largest now (provisional
            # in a batch until it is inserted, which sets the stored one)
            self._totals = (int(inserted), max(self._totals[1], update.epoch))
        self.run = replace(run, updates=run.updates + 1)
        return int(inserted)

    def flush(self) -> None:
        """Write what is kept to be written once per transaction (the update count)."""
        added = self._take_uncounted()
        if added:
            self._conn.execute(_COUNT_UPDATES, {"id": self.run_id, "added": added})

    def _take_uncounted(self) -> int:
        added, self._uncounted = self._uncounted, 0
        return added

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
        self._frozen = None
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
        self._ending()
        self._reading_updates()
        self._frozen = None
        for table in (run_epochs, run_updates):
            self._conn.execute(
                table.delete().where(table.c.run_id == self.run_id, table.c.epoch < epoch)
            )
        self._conn.execute(runs.update().where(runs.c.id == self.run_id).values(kept_from=epoch))
        self.run = replace(run, kept_from=epoch)

    def delete_run(self) -> None:
        """Delete the run, its updates and its frozen epochs."""
        self._locked_run()
        self._ending()
        self._reading_updates()
        self._frozen = None
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
    if "max_seq" in row:  # else (PostgreSQL) read once the lock is held: update_totals()
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
