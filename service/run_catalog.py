"""The run catalog: runs as the HTTP layer sees them (a join of core and store, as
:class:`~sampleplan.service.catalog.Catalog` is for datasets and plans).

A run's epoch ``e`` is drawn exactly as a plan's, from a :class:`PreparedPlan` whose
weights are the run's frozen weights of epoch ``e`` (NOTE [Run updates] in
``core/runs.py``). Frozen weights never change, so they are kept in memory once read;
epoch streams are cached under the run's id, never under the plan's, so a run's epochs
and its plan's epochs never mix.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import numpy.typing as npt

from sampleplan.core.deadlines import check_deadline
from sampleplan.core.epochs import check_epoch
from sampleplan.core.lru import LRUCache
from sampleplan.core.prepared import PreparedPlan
from sampleplan.core.runs import NextEpoch, RunUpdate, check_run_id, parse_op, replay
from sampleplan.core.streams import Int64Array, StreamRequest
from sampleplan.service.catalog import Catalog, Plan
from sampleplan.service.errors import (
    EpochFrozen,
    EpochNotReached,
    InvalidPlanConfig,
    InvalidRunUpdate,
    RunNotFound,
    RunPlanConflict,
    UpdateIdConflict,
)
from sampleplan.service.storage import (
    EpochRecord,
    RunRecord,
    RunStore,
    RunTransaction,
    UpdateRecord,
)

Float64Array = npt.NDArray[np.float64]

#: Frozen epochs whose weights (and drawing tables) are kept in memory.
_FROZEN_CACHE = 16

#: Runs whose next epoch's weights so far are kept (NOTE [Pending epoch state]).
_PENDING_CACHE = 16


@dataclass(frozen=True, eq=False)
class _Pending:
    """Weights of epoch ``e + 1`` after the updates of epoch ``e`` stored so far."""

    updates: int  # the run's update count, and
    max_seq: int  # its largest seq, when this was made
    state: NextEpoch


@dataclass(frozen=True, eq=False)
class _Ahead:
    """An update applied to a pending state before the run's lock was taken: used under
    the lock only if that state is still the current one (NOTE [Pending epoch state])."""

    pending: _Pending
    result: NextEpoch | None
    error: InvalidRunUpdate | None


@dataclass(frozen=True)
class RunInfo:
    id: str
    plan_id: str
    frozen_epochs: list[int]
    updates: int
    created_at: datetime


def _digest(weights: Float64Array) -> str:
    return hashlib.sha256(np.ascontiguousarray(weights, dtype="<f8").data).hexdigest()


def _locked_run(tx: RunTransaction) -> RunRecord:
    if tx.run is None:
        raise RunNotFound(f"no run has id {tx.run_id!r}")
    return tx.run


def _to_record(update: RunUpdate, update_id: str | None) -> UpdateRecord:
    return UpdateRecord(
        seq=0,
        epoch=update.epoch,
        rank=update.rank,
        step=update.step,
        op=update.op,
        alpha=update.alpha,
        indices=np.ascontiguousarray(update.indices, dtype="<i8").tobytes(),
        values=np.ascontiguousarray(update.values, dtype="<f8").tobytes(),
        update_id=update_id,
    )


def _same_payload(stored: UpdateRecord, sent: UpdateRecord) -> bool:
    """Whether a stored update and a sent one are the same update (``seq`` aside)."""
    return (
        stored.epoch == sent.epoch
        and stored.rank == sent.rank
        and stored.step == sent.step
        and stored.op == sent.op
        and stored.alpha == sent.alpha
        and stored.indices == sent.indices
        and stored.values == sent.values
    )


def _to_update(record: UpdateRecord) -> RunUpdate:
    return RunUpdate(
        epoch=record.epoch,
        rank=record.rank,
        step=record.step,
        op=parse_op(record.op),
        alpha=record.alpha,
        indices=np.frombuffer(record.indices, dtype="<i8").astype(np.int64),
        values=np.frombuffer(record.values, dtype="<f8").astype(np.float64),
        seq=record.seq,
    )


class RunCatalog:
    """Creates runs, takes their updates, freezes and serves their epochs."""

    def __init__(self, store: RunStore, catalog: Catalog) -> None:
        self.store = store
        self.catalog = catalog
        self._frozen: LRUCache[tuple[str, int], PreparedPlan] = LRUCache(_FROZEN_CACHE)
        self._pending: LRUCache[tuple[str, int], _Pending] = LRUCache(_PENDING_CACHE)

    # -- runs -----------------------------------------------------------------------------

    def create_run(self, run_id: str, plan_id: str) -> tuple[RunInfo, bool]:
        """Make run ``run_id`` on ``plan_id``; ``True`` if new. 409 if it is another plan's."""
        check_run_id(run_id)
        plan = self.catalog.get_plan(plan_id)
        if plan.prepared.config.schedule is not None:
            raise InvalidPlanConfig(
                "a run's weights start from its plan's and change only by its updates; "
                "a plan with a schedule cannot back a run (make the plan without one)"
            )
        record, created = self.store.create_run(run_id, plan.id)
        if record.plan_id != plan.id:
            raise RunPlanConflict(
                f"run {run_id!r} exists already, for plan {record.plan_id}; "
                f"choose another run id for plan {plan.id}"
            )
        return self._info(record), created

    def get_run(self, run_id: str) -> RunInfo:
        return self._info(self._record(run_id))

    def _record(self, run_id: str) -> RunRecord:
        check_run_id(run_id)
        record = self.store.get_run(run_id)
        if record is None:
            raise RunNotFound(f"no run has id {run_id!r}")
        return record

    def _info(self, record: RunRecord) -> RunInfo:
        return RunInfo(
            id=record.id,
            plan_id=record.plan_id,
            frozen_epochs=self.store.frozen_epochs(record.id),
            updates=record.updates,
            created_at=record.created_at,
        )

    def plan_of(self, run_id: str) -> tuple[RunRecord, Plan]:
        record = self._record(run_id)
        return record, self.catalog.get_plan(record.plan_id)

    # -- updates --------------------------------------------------------------------------

    def add_update(self, run_id: str, update: RunUpdate, update_id: str | None = None) -> RunInfo:
        """Accept ``update`` (NOTE [Run updates]), or refuse it and store nothing.

        ``update_id``, chosen by the sender, makes a retried request harmless: an update
        with an id the run has stored already is not applied twice.

        One unit of work (NOTE [Run transactions] in ``storage/runs.py``): under the run's
        lock, read what the decision needs, decide (the arithmetic is ``core/runs.py``'s),
        store the update; the transaction commits as the ``with`` block ends, and only then
        is the next epoch's state remembered (NOTE [Pending epoch state]).
        """
        _, plan = self.plan_of(run_id)
        update.check(plan.prepared.population_size)
        pending: _Pending | None = None
        record = _to_record(update, update_id)
        ahead = self._ahead(run_id, plan, update)
        with self.store.transaction(run_id) as tx:
            run = _locked_run(tx)
            stored = tx.stored_update(update_id) if update_id is not None else None
            if stored is not None and not _same_payload(stored, record):
                raise UpdateIdConflict(
                    f"run {run_id!r} has stored another update under update_id {update_id!r} "
                    f"(epoch {stored.epoch}, rank {stored.rank}, step {stored.step}, op "
                    f"{stored.op!r}, {len(stored.indices) // 8} indices); an update id names "
                    "one payload: send a new update with a new id"
                )
            # A retried request (its id is stored already, with this very payload) is
            # neither checked nor stored again.
            if stored is None:
                if update.epoch < run.max_frozen:
                    raise EpochFrozen(
                        f"epoch {run.max_frozen} of run {run_id!r} is frozen (it has been "
                        f"served), so an update sent during epoch {update.epoch} can no longer "
                        f"change it; updates are accepted for epoch {run.max_frozen} and later"
                    )
                next_epoch = self._next_epoch(tx, run, plan, update, ahead)
                seq = tx.add_update(record)
                run = _locked_run(tx)
                check_deadline()  # a request past its timeout commits nothing (NOTE [Deadlines])
                if next_epoch is not None:
                    pending = _Pending(updates=run.updates, max_seq=seq, state=next_epoch)
        if pending is not None:  # committed: the state is the stored updates'
            self._pending.put((run_id, update.epoch), pending)
        return self._info(run)

    def _ahead(self, run_id: str, plan: Plan, update: RunUpdate) -> _Ahead | None:
        """``update`` applied to the run's pending state, before the run's lock is taken
        (NOTE [Pending epoch state]); ``None`` when this replica has no such state."""
        pending = self._pending.peek((run_id, update.epoch))
        if pending is None:
            return None
        prepared = plan.prepared
        try:
            result = pending.state.then(
                update, num_samples=prepared.num_samples, replacement=prepared.config.replacement
            )
        except InvalidRunUpdate as exc:
            return _Ahead(pending=pending, result=None, error=exc)
        return _Ahead(pending=pending, result=result, error=None)

    def _next_epoch(
        self,
        tx: RunTransaction,
        run: RunRecord,
        plan: Plan,
        update: RunUpdate,
        ahead: _Ahead | None = None,
    ) -> NextEpoch | None:
        """Check that the weights stay drawable at every epoch with ``update`` among the
        updates (else :class:`InvalidRunUpdate`); answer the weights of epoch
        ``update.epoch + 1`` so far when no later epoch has updates (``None`` otherwise)."""
        prepared = plan.prepared
        max_seq, max_epoch = tx.update_totals()
        latest = max_epoch <= update.epoch
        pending = self._pending_state(run.id, update.epoch, run.updates, max_seq)
        if latest and pending is not None:
            # The common case: this update sorts after every update of its epoch, and no
            # later epoch has any: apply it alone to the epoch's state so far, which was
            # done before the lock when that state is still the current one.
            if ahead is not None and ahead.pending is pending:
                if ahead.error is not None:
                    raise ahead.error
                extended = ahead.result
            else:
                extended = pending.state.then(
                    update,
                    num_samples=prepared.num_samples,
                    replacement=prepared.config.replacement,
                )
            if extended is not None:
                return extended
        # Replay to the last epoch that has updates, with this one among them: the weights
        # must stay drawable at every epoch, whatever arrives in what order.
        weights, _ = self._replay(tx, plan, None, extra=update)
        if not latest:
            return None
        return NextEpoch(weights=weights, last_key=tx.last_key(update.epoch, update.key))

    # NOTE [Pending epoch state]
    #     Checking an update replays its epoch's updates (NOTE [Run updates]), which would
    #     make an epoch of k updates cost O(k^2). So each replica keeps, per run, the
    #     weights of the next epoch as its updates so far made them (``_Pending``), tagged
    #     with the run's update count and largest ``seq`` when it was made. Under the
    #     run's lock, if neither has moved since (no update reached the run through another
    #     replica), no later epoch has updates, and the new update sorts after the state's
    #     last one, the update is applied to that state alone. Anything else replays.
    #     A freeze of the next epoch reads the same state when it is still current.
    #     Applying the update (a copy and a check of the whole weight vector) is done
    #     before the lock is taken, against the state as this replica last saw it
    #     (``_Ahead``), and used under the lock only when that very state is still the
    #     current one: the run's lock (on SQLite the database's write lock) is then held
    #     for reads and writes only.

    # NOTE [Reads never end a run]
    #     Reading an epoch freezes it, and updates are accepted only for the latest frozen
    #     epoch and later: a read of epoch 4294967295 would end the run (every update after
    #     it a 409). So an epoch is frozen only when it is at most one past epoch 0 and the
    #     run's latest epoch that was read or that has updates (epochs 0 and 1 of a new run,
    #     epoch ``e + 1`` once ``e`` has been read or updated); a read further ahead is a 409
    #     ``epoch-not-reached`` that freezes nothing. A training job reads its epochs in
    #     order and never meets it; a job that skips epochs without updates reads them one
    #     after another, or skips at most one at a time.

    def _pending_state(
        self, run_id: str, epoch: int, updates: int, max_seq: int
    ) -> _Pending | None:
        pending = self._pending.peek((run_id, epoch))
        if pending is None or pending.updates != updates or pending.max_seq != max_seq:
            return None
        return pending

    def _replay(
        self,
        tx: RunTransaction,
        plan: Plan,
        stop_epoch: int | None,
        extra: RunUpdate | None = None,
    ) -> tuple[Float64Array, bool]:
        """Weights of epoch ``stop_epoch`` (``None``: after every stored update) and whether
        any update went into them, from the latest frozen epoch before it."""
        prepared = plan.prepared
        # Epochs up to the latest frozen one are final: replay from the latest frozen
        # epoch at or before the first epoch that can still change.
        before = stop_epoch if stop_epoch is not None else (extra.epoch + 1 if extra else 2**62)
        first = tx.latest_frozen_before(before)
        weights = prepared.weights
        updated = False
        if first is None:
            first = 0
        else:
            cached = self._frozen.peek((tx.run_id, first))
            if cached is not None:
                weights = cached.weights
                updated = weights is not prepared.weights
            else:
                base = tx.epoch(first)
                if base is not None and base.weights is not None:
                    weights = np.frombuffer(base.weights, dtype="<f8")
                    updated = True
        stop = stop_epoch if stop_epoch is not None else 2**62
        updates = [_to_update(r) for r in tx.updates_between(first, stop)]
        if extra is not None:
            updates.append(replace(extra, seq=2**62))  # it arrives last
        weights, replayed = replay(
            weights,
            updates,
            num_samples=prepared.num_samples,
            replacement=prepared.config.replacement,
        )
        return weights, updated or replayed

    # -- epochs ---------------------------------------------------------------------------

    def epoch_plan(self, run_id: str, epoch: int) -> tuple[Plan, PreparedPlan]:
        """The run's plan and the prepared plan its epoch ``epoch`` draws from (frozen now)."""
        check_epoch(epoch)
        _, plan = self.plan_of(run_id)
        key = (run_id, epoch)
        cached = self._frozen.get(key)
        if cached is not None:
            return plan, cached
        record = self.store.get_epoch(run_id, epoch)
        if record is None:
            record = self._freeze(run_id, plan, epoch)
        weights = (
            plan.prepared.weights
            if record.weights is None
            else np.frombuffer(record.weights, dtype="<f8")
        )
        prepared = replace(plan.prepared, weights=weights)
        self._frozen.put(key, prepared)
        return plan, prepared

    def _freeze(self, run_id: str, plan: Plan, epoch: int) -> EpochRecord:
        """Epoch ``epoch``'s record, frozen now if no one has frozen it yet: one unit of
        work under the run's lock, as :meth:`add_update`."""
        with self.store.transaction(run_id) as tx:
            run = _locked_run(tx)
            existing = tx.epoch(epoch)
            if existing is not None:
                return existing
            max_seq, max_epoch = tx.update_totals()
            reached = max(run.max_frozen, max_epoch, 0) + 1
            if epoch > reached:
                # NOTE [Reads never end a run]
                raise EpochNotReached(
                    f"run {run_id!r} has reached epoch {reached} (one past epoch 0 and its "
                    f"latest epoch read or updated); epoch {epoch} cannot be read yet, since "
                    "reading an epoch freezes it and every epoch before it would then refuse "
                    "updates: read the run's epochs in order"
                )
            pending = (
                self._pending_state(run_id, epoch - 1, run.updates, max_seq) if epoch > 0 else None
            )
            if pending is not None:
                weights, updated = pending.state.weights, True
            else:
                weights, updated = self._replay(tx, plan, epoch)
            record = EpochRecord(
                epoch=epoch,
                weights=np.ascontiguousarray(weights, dtype="<f8").tobytes() if updated else None,
                weights_sha256=_digest(weights),
            )
            check_deadline()  # NOTE [Deadlines]
            tx.freeze(record)
            return record

    def weights(self, run_id: str, epoch: int) -> tuple[Plan, Float64Array]:
        """Epoch ``epoch``'s weights (freezing it)."""
        plan, prepared = self.epoch_plan(run_id, epoch)
        self.catalog.check_page(prepared.population_size)
        return plan, prepared.weights

    def epoch_in_flight(self, run_id: str, epoch: int) -> AbstractContextManager[None]:
        """Marks a request for a page of the run's epoch as being served, from its arrival
        (NOTE [Held while in flight] in ``epoch_cache.py``)."""
        return self.catalog.epoch_in_flight(_stream_key(run_id), epoch)

    def indices(self, run_id: str, request: StreamRequest) -> tuple[Plan, PreparedPlan, Int64Array]:
        """A page of the run's stream of ``request.epoch`` (freezing the epoch), with the
        run's plan and the prepared plan the epoch draws from."""
        plan, prepared = self.epoch_plan(run_id, request.epoch)
        return plan, prepared, self.catalog.stream_page(prepared, _stream_key(run_id), request)


def _stream_key(run_id: str) -> tuple[str, str]:
    """What a run's epochs are cached under (beside plans' ids, which are plain strings)."""
    return ("run", run_id)
