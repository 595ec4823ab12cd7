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
    number of replicas may race; they serialise on the row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
    sa.Column("plan_id", sa.String(64), sa.ForeignKey("plans.id"), nullable=False, index=True),
    # The latest frozen epoch (-1: none): updates for an earlier epoch are refused.
    sa.Column("max_frozen", sa.BigInteger, nullable=False),
    sa.Column("updates", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
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
)


@dataclass(frozen=True)
class RunRecord:
    id: str
    plan_id: str
    max_frozen: int
    updates: int
    created_at: datetime


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
    weights: bytes | None  # raw little-endian float64; None: the plan's
    weights_sha256: str


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _run(row: Any) -> RunRecord:
    return RunRecord(
        id=row["id"],
        plan_id=row["plan_id"],
        max_frozen=int(row["max_frozen"]),
        updates=int(row["updates"]),
        created_at=row["created_at"],
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
        query = (
            sa.select(run_epochs.c.epoch)
            .where(run_epochs.c.run_id == run_id)
            .order_by(run_epochs.c.epoch)
        )
        with _storage_errors(), self.engine.connect() as conn:
            return [int(e) for e in conn.execute(query).scalars()]

    # -- the unit of work -----------------------------------------------------------------

    @contextmanager
    def transaction(self, run_id: str) -> Iterator[RunTransaction]:
        """One transaction holding run ``run_id``'s lock: see NOTE [Run transactions].

        The caller reads through it, decides, and writes through it; it commits when the
        ``with`` block ends and rolls back, writing nothing, when the block raises.
        """
        with _storage_errors(), self.engine.begin() as conn:
            query = sa.select(runs).where(runs.c.id == run_id)
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                query = query.with_for_update()
            row = conn.execute(query).mappings().first()
            yield RunTransaction(conn, run_id, _run(row) if row is not None else None)

    # -- epochs ---------------------------------------------------------------------------

    def get_epoch(self, run_id: str, epoch: int) -> EpochRecord | None:
        """Epoch ``epoch``'s record if it is frozen, outside any transaction."""
        with _storage_errors(), self.engine.connect() as conn:
            return _epoch(conn, run_id, epoch)


class RunTransaction:
    """What one run's transaction reads and writes (:meth:`RunStore.transaction`).

    ``run`` is the locked run as this transaction leaves it (``None``: no such run; then
    nothing can be written). The store decides nothing: the run catalog does, between the
    reads and the writes.
    """

    def __init__(self, conn: Connection, run_id: str, run: RunRecord | None) -> None:
        self._conn = conn
        self.run_id = run_id
        self.run = run

    # -- reads ----------------------------------------------------------------------------

    def has_update(self, update_id: str) -> bool:
        """Whether an update with this sender's id is stored (a retried request)."""
        query = sa.select(run_updates.c.seq).where(
            run_updates.c.run_id == self.run_id, run_updates.c.update_id == update_id
        )
        return self._conn.execute(query).first() is not None

    def stored_update(self, update_id: str) -> UpdateRecord | None:
        """The update stored under this sender's id, if any (a retried request, or an id
        used again for another payload)."""
        query = sa.select(run_updates).where(
            run_updates.c.run_id == self.run_id, run_updates.c.update_id == update_id
        )
        row = self._conn.execute(query).mappings().first()
        return None if row is None else replace(_update(row), update_id=update_id)

    def update_totals(self) -> tuple[int, int]:
        """``(largest seq, largest epoch)`` of the run's updates (``(-1, -1)``: none)."""
        query = sa.select(sa.func.max(run_updates.c.seq), sa.func.max(run_updates.c.epoch)).where(
            run_updates.c.run_id == self.run_id
        )
        seq, epoch = self._conn.execute(query).one()
        return (-1 if seq is None else int(seq)), (-1 if epoch is None else int(epoch))

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

    def epoch(self, epoch: int) -> EpochRecord | None:
        """Epoch ``epoch``'s record if it is frozen."""
        return _epoch(self._conn, self.run_id, epoch)

    # -- writes ---------------------------------------------------------------------------

    def add_update(self, update: UpdateRecord) -> int:
        """Store ``update`` (its ``seq`` is assigned here, and answered)."""
        run = self._locked_run()
        inserted = self._conn.execute(
            run_updates.insert()
            .values(
                run_id=self.run_id,
                epoch=update.epoch,
                rank=update.rank,
                step=update.step,
                op=update.op,
                alpha=update.alpha,
                indices=update.indices,
                values=update.values,
                update_id=update.update_id,
                created_at=_now(),
            )
            .returning(run_updates.c.seq)
        ).scalar_one()
        self._conn.execute(
            runs.update().where(runs.c.id == self.run_id).values(updates=runs.c.updates + 1)
        )
        self.run = replace(run, updates=run.updates + 1)
        return int(inserted)

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
            )
        )
        if record.epoch > run.max_frozen:
            self._conn.execute(
                runs.update().where(runs.c.id == self.run_id).values(max_frozen=record.epoch)
            )
            self.run = replace(run, max_frozen=record.epoch)

    def _locked_run(self) -> RunRecord:
        if self.run is None:
            raise RuntimeError(f"no run {self.run_id!r} to write to: check .run first")
        return self.run


def _epoch(conn: Connection, run_id: str, epoch: int) -> EpochRecord | None:
    query = sa.select(run_epochs).where(run_epochs.c.run_id == run_id, run_epochs.c.epoch == epoch)
    row = conn.execute(query).mappings().first()
    if row is None:
        return None
    blob = row["weights"]
    return EpochRecord(
        epoch=int(row["epoch"]),
        weights=bytes(blob) if blob is not None else None,
        weights_sha256=row["weights_sha256"],
    )
