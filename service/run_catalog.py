"""The run catalog: runs as the HTTP layer sees them (a join of core and store, as
:class:`~sampleplan.service.catalog.Catalog` is for datasets and plans).

A run's epoch ``e`` is drawn exactly as a plan's, from a :class:`PreparedPlan` whose
weights are the run's frozen weights of epoch ``e`` (NOTE [Run updates] in
``core/runs.py``). Frozen weights never change, so they are kept in memory once read;
epoch streams are cached under the run's id, never under the plan's, so a run's epochs
and its plan's epochs never mix.

A run over a mixture plan has one weight per source, and its epoch ``e`` is drawn by a
:class:`~sampleplan.core.mixtures.runs.RunMixtureDrawer` from the weights frozen for each
epoch up to ``e`` (NOTE [Mixture runs]); its updates are stored, ordered, checked and
frozen exactly as every run's.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import threading
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt

from sampleplan.core.deadlines import check_deadline
from sampleplan.core.epochs import check_epoch
from sampleplan.core.errors import SamplingError
from sampleplan.core.lru import LRUCache
from sampleplan.core.mixtures import mixture_page
from sampleplan.core.mixtures.runs import RunMixtureDrawer, weighted_mixture
from sampleplan.core.prepared import PreparedPlan
from sampleplan.core.runs import (
    NextEpoch,
    ResultCheck,
    RunUpdate,
    check_run_id,
    parse_op,
    replay,
)
from sampleplan.core.streams import Int64Array, StreamRequest
from sampleplan.service.catalog import Catalog, Plan
from sampleplan.service.errors import (
    EpochFrozen,
    EpochNotReached,
    EpochPruned,
    InvalidPlanConfig,
    InvalidRunUpdate,
    RunNotFound,
    RunPlanConflict,
    StorageUnavailable,
    UpdateIdConflict,
)
from sampleplan.service.mixture_plans import MixturePlan
from sampleplan.service.storage import (
    EpochRecord,
    RunReads,
    RunRecord,
    RunStore,
    RunTransaction,
    UpdateRecord,
)

Float64Array = npt.NDArray[np.float64]

#: What a run draws from: a plan over one dataset, or a mixture plan.
RunPlan = Plan | MixturePlan


@dataclass(frozen=True, eq=False)
class MixtureEpoch:
    """A mixture run's epoch: its source weights (what a plan's epoch is a
    :class:`PreparedPlan` for)."""

    weights: Float64Array

    @property
    def population_size(self) -> int:
        return int(self.weights.shape[0])


EpochPlan = PreparedPlan | MixtureEpoch


def _plan_weights(plan: RunPlan) -> Float64Array:
    """The weights a run starts from: the plan's per-sample weights, or a mixture's source
    weights (NOTE [Mixture runs])."""
    if isinstance(plan, MixturePlan):
        return plan.run_weights
    return plan.prepared.weights


def _population_size(plan: RunPlan) -> int:
    if isinstance(plan, MixturePlan):
        return len(plan.mixture.sources)
    return plan.prepared.population_size


def _draw_rules(plan: RunPlan) -> tuple[int, bool, ResultCheck | None]:
    """``(num_samples, replacement, check)`` an update's result is checked against: a
    mixture's source weights must be drawable weights the mixture can mix by."""
    if isinstance(plan, MixturePlan):
        return 0, True, partial(_check_mixture_weights, plan)
    return plan.prepared.num_samples, plan.prepared.config.replacement, None


def _check_mixture_weights(plan: MixturePlan, weights: Float64Array) -> None:
    """Refuse source weights the plan's mixture cannot draw by (NOTE [Mixture runs]), as
    ``hf-interleave``'s ``all_exhausted`` with a source of weight 0: when the update
    comes, not when its epoch is first read."""
    try:
        weighted_mixture(plan.mixture, weights)
    except InvalidPlanConfig as exc:
        raise InvalidRunUpdate(f"{exc.detail}; the update is refused") from exc


#: Frozen epochs whose weights (and drawing tables) are kept in memory.
_FROZEN_CACHE = 16

#: Runs whose next epoch's weights so far are kept (NOTE [Pending epoch state]).
_PENDING_CACHE = 16

#: A frozen epoch is stored whole (a keyframe) when this many frozen epochs would
#: otherwise lie between it and the previous keyframe (NOTE [How frozen epochs are stored]).
KEYFRAME_EVERY = 64

#: ... or when the updates since the previous keyframe take this share of the bytes of
#: the weights (NOTE [How frozen epochs are stored]).
KEYFRAME_UPDATE_SHARE = 1 / 8

# NOTE [How frozen epochs are stored]
#     A frozen epoch's weights are a function of the plan's weights and the updates of
#     the epochs before it, and those updates are final once it is frozen (an update for
#     an epoch before the latest frozen one is refused). So most frozen epochs store no
#     weights: only their SHA-256 and ``base_epoch``, the frozen epoch (-1: the plan)
#     they were derived from. Reading one replays the updates of the epochs since the
#     latest keyframe before it (or the latest frozen epoch before it that is in the
#     frozen-epoch LRU), epoch by epoch as its freeze did, which makes the same bits
#     (the same float64 operations in the same order; the SHA-256 is checked, and a
#     mismatch is a 503, never other weights).
#     A keyframe stores the weights whole: an epoch is one when ``KEYFRAME_EVERY``
#     frozen epochs would lie since the last keyframe, or when the updates since it
#     take an eighth of the bytes the weights do (``KEYFRAME_UPDATE_SHARE``). Replaying
#     one epoch from its keyframe so costs at most ``KEYFRAME_EVERY`` passes over the
#     weights plus an eighth of their bytes in updates, and storage is at most the
#     updates, eight times their bytes in keyframes, and one weights array per
#     ``KEYFRAME_EVERY`` frozen epochs (1e6 samples, small updates: 8 MB / 64 = 125 KB
#     per epoch). A replica's first read of the epoch after a large update (1e5 of 1e6
#     weights) so reads a keyframe, as fast as the whole weights were read before.
#     An epoch frozen before any update went in stores nothing: it is the plan's.
#     Frozen epochs of schema 2 are all keyframes; they are read as they are.
#     Retention (``run_keep_epochs``): when an epoch is frozen, the latest keyframe at
#     or before the first epoch to keep becomes the run's ``kept_from``; the frozen
#     epochs and updates before it are deleted, and reading them is a 410.


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


class _PlanChanged(Exception):
    """The run was deleted and made again for another plan since its plan was looked up."""


#: Most weights of a run whose parsed updates are checked and queued on the event loop
#: (NOTE [Small runs' updates on the event loop]).
_INLINE_WEIGHTS = 65_536

#: Most updates one transaction commits (NOTE [Group commit]).
_BATCH = 64

#: Writer threads per replica on PostgreSQL (SQLite has one writer); each holds one of the
#: pool's connections while it writes. A batch's round trips no longer grow with its
#: updates (NOTE [Run transactions]), so one writer batches the most and costs the least:
#: under 32 clients of small updates, 1.1-1.7 ms of the server's CPU per update with one,
#: 2.3-2.7 ms with two to eight (docs/operations/runs-storage.md). More writers only
#: overlap round trips, at the cost of smaller batches.
_PG_WRITERS = 1


@dataclass(eq=False)
class _Queued:
    """An update waiting for the writer, then its answer."""

    run_id: str
    plan: RunPlan
    update: RunUpdate
    update_id: str | None
    record: UpdateRecord  # the update as stored
    ahead: _Ahead | None  # applied before the lock (NOTE [Pending epoch state])
    context: contextvars.Context  # the request's, with its deadline (NOTE [Deadlines])
    result: RunInfo | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    #: Resolved on its event loop when done, for a coroutine's update
    #: (NOTE [Answered on the event loop]); ``None``: a thread waits on ``done``.
    answer: asyncio.Future[RunInfo] | None = None


def _answer(answered: list[_Queued]) -> None:
    """On the event loop: resolve the futures of updates the writer is done with (unless
    their request has gone: a cancelled future)."""
    for queued in answered:
        future = queued.answer
        assert future is not None
        if future.done():
            continue
        if queued.error is not None:
            future.set_exception(queued.error)
        else:
            future.set_result(queued.result)  # type: ignore[arg-type]


class _Writer:
    """The replica's writer thread of NOTE [Group commit]."""

    def __init__(self, commit: Callable[[list[_Queued]], None]) -> None:
        self._commit = commit
        self._queue: deque[_Queued] = deque()
        self._lock = threading.Condition()
        self._running = False

    def submit(self, queued: _Queued) -> None:
        """Queue ``queued``; its ``done`` is set (and its ``answer`` resolved) once it is
        committed or refused."""
        with self._lock:
            self._queue.append(queued)
            self._lock.notify()
            if not self._running:
                self._running = True
                threading.Thread(
                    target=self._loop, name="sampleplan-run-writer", daemon=True
                ).start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._lock.wait(timeout=1.0)
                if not self._queue:
                    self._running = False
                    return
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), _BATCH))]
            try:
                self._commit(batch)
            except BaseException as exc:  # the commit failed: no update of it is stored
                for queued in batch:
                    if queued.result is not None or queued.error is None:
                        queued.result, queued.error = None, exc
                if isinstance(exc, StorageUnavailable) and exc.__cause__ is not None:
                    # The database failed (the store raises the 503 from the driver's
                    # error; NOTE [Database timeouts]): the updates that queued meanwhile
                    # get the same 503 now rather than a wait as long again; none of
                    # them was tried, and a retry stores each once.
                    with self._lock:
                        behind = list(self._queue)
                        self._queue.clear()
                    for queued in behind:
                        queued.error = exc
                    batch += behind
            finally:
                loops: dict[asyncio.AbstractEventLoop, list[_Queued]] = {}
                for queued in batch:
                    queued.done.set()
                    if queued.answer is not None:
                        loops.setdefault(queued.answer.get_loop(), []).append(queued)
                # One call per event loop for the batch (NOTE [Answered on the event loop]).
                for loop, answered in loops.items():
                    with suppress(RuntimeError):  # a closed loop: nobody waits for them
                        loop.call_soon_threadsafe(_answer, answered)


@dataclass(frozen=True, eq=False)
class _FreezeDraft:
    """A frozen epoch's weights computed before the run's lock, and what from
    (NOTE [Freezes prepared before the lock])."""

    tag: tuple[object, ...]
    weights: Float64Array
    updated: bool
    digest: str


def _freeze_tag(run: RunRecord, max_seq: int) -> tuple[object, ...]:
    """What a frozen epoch's weights are computed from, as far as it can move."""
    return (*_incarnation(run), run.updates, max_seq, run.max_frozen, run.kept_from)


@dataclass(frozen=True)
class RunInfo:
    id: str
    plan_id: str
    frozen_epochs: list[int]
    updates: int
    created_at: datetime


def _digest(weights: Float64Array) -> str:
    return hashlib.sha256(np.ascontiguousarray(weights, dtype="<f8").data).hexdigest()


def _incarnation(run: RunRecord) -> tuple[str, str]:
    """What a run's cached state is kept under: a run deleted and made again under its id
    is another run, whose epochs must not be served from the first one's.

    The time in UTC without its zone: the record just made holds an aware time, SQLite
    hands back a naive one (PostgreSQL an aware one), and the key must be the same for
    all of them."""
    created = run.created_at
    if created.tzinfo is not None:
        created = created.astimezone(timezone.utc).replace(tzinfo=None)
    return (run.id, created.isoformat())


def _locked_run(tx: RunReads) -> RunRecord:
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
        self._frozen: LRUCache[tuple[str, str, int], EpochPlan] = LRUCache(_FROZEN_CACHE)
        # Mixture runs' drawers, by incarnation (they keep each epoch's take counts).
        self._mixture_drawers: LRUCache[tuple[str, str], RunMixtureDrawer] = LRUCache(_FROZEN_CACHE)
        self._pending: LRUCache[tuple[str, str, int], _Pending] = LRUCache(_PENDING_CACHE)
        # The incarnation each run id was last seen with (for epoch_in_flight's key).
        self._seen: LRUCache[str, tuple[str, str]] = LRUCache(1024)
        # The plan of each run id lately seen (a run's plan never changes; a run deleted
        # and made again may have another, which the update's transaction finds out).
        self._plan_ids: LRUCache[str, str] = LRUCache(1024)
        # What the floor serves a run's pages from, by run id (NOTE [Run pages at the
        # floor]): the run as last read, with the runs' generation read before it.
        self._live: LRUCache[str, _Live] = LRUCache(1024)
        # SQLite has one writer at a time; PostgreSQL overlaps a few transactions' trips.
        sqlite = store.engine.dialect.name == "sqlite"
        self._writers = [_Writer(self._commit_batch) for _ in range(1 if sqlite else _PG_WRITERS)]

    # -- runs -----------------------------------------------------------------------------

    def create_run(self, run_id: str, plan_id: str) -> tuple[RunInfo, bool]:
        """Make run ``run_id`` on ``plan_id``; ``True`` if new. 409 if it is another plan's."""
        check_run_id(run_id)
        plan = self.catalog.get_any_plan(plan_id)
        if isinstance(plan, Plan) and plan.prepared.config.schedule is not None:
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
        # Known from now on: its first pages are in flight under its real key (NOTE [Held
        # while in flight] in epoch_cache.py), not under a stand-in that no draw uses.
        self._seen.put(run_id, _incarnation(record))
        return self._info(record), created

    def get_run(self, run_id: str) -> RunInfo:
        return self._info(self._record(run_id))

    def _record(self, run_id: str) -> RunRecord:
        check_run_id(run_id)
        record = self.store.get_run(run_id)
        if record is None:
            raise RunNotFound(f"no run has id {run_id!r}")
        self._seen.put(run_id, _incarnation(record))
        return record

    def _info(self, record: RunRecord, frozen: list[int] | None = None) -> RunInfo:
        return RunInfo(
            id=record.id,
            plan_id=record.plan_id,
            frozen_epochs=self.store.frozen_epochs(record.id) if frozen is None else frozen,
            updates=record.updates,
            created_at=record.created_at,
        )

    def plan_of(self, run_id: str) -> tuple[RunRecord, RunPlan]:
        generation = self.store.generation
        seen_at = None if generation is None else generation.current()  # before the read
        record = self._record(run_id)
        self._plan_ids.put(run_id, record.plan_id)
        plan = self.catalog.get_any_plan(record.plan_id)
        if seen_at is not None and isinstance(plan, Plan):
            self._live.put(run_id, _Live(record, seen_at))
        return record, plan

    def delete_run(self, run_id: str) -> None:
        """Delete run ``run_id``, its updates and its frozen epochs (404 if there is none).

        What this replica kept of it is under its incarnation (:func:`_incarnation`), so a
        run made again with the same id never sees it, here or on another replica; it
        leaves the caches as they evict.
        """
        check_run_id(run_id)
        if not self.store.delete_run(run_id):
            raise RunNotFound(f"no run has id {run_id!r}")
        self._seen.pop(run_id)
        self._plan_ids.pop(run_id)
        self._live.pop(run_id)

    # -- updates --------------------------------------------------------------------------

    def add_update(self, run_id: str, update: RunUpdate, update_id: str | None = None) -> RunInfo:
        """Accept ``update`` (NOTE [Run updates]), or refuse it and store nothing; see
        :meth:`_submit`."""
        try:
            return self._wait(self._submit(run_id, update, update_id))
        except _PlanChanged:
            return self._wait(self._submit(run_id, update, update_id))

    async def add_update_async(
        self, run_id: str, parse: Callable[[], tuple[RunUpdate, str | None]]
    ) -> RunInfo:
        """:meth:`add_update` of the update ``parse`` makes, from a coroutine: parsed,
        checked and queued in a worker thread, waited for on the event loop
        (NOTE [Answered on the event loop])."""
        answer: asyncio.Future[RunInfo] = asyncio.get_running_loop().create_future()

        def parse_and_submit() -> tuple[RunUpdate, str | None]:
            update, update_id = parse()
            self._submit(run_id, update, update_id, answer)
            return update, update_id

        # anyio's worker threads, as the route's own would be (the request's context,
        # with its deadline, goes with the call).
        update, update_id = await anyio.to_thread.run_sync(parse_and_submit)
        try:
            return await answer
        except _PlanChanged:
            return await anyio.to_thread.run_sync(self.add_update, run_id, update, update_id)

    async def add_parsed_update_async(
        self, run_id: str, update: RunUpdate, update_id: str | None
    ) -> RunInfo:
        """:meth:`add_update_async` of an update parsed already: checked and queued on the
        event loop itself when its run's plan is in memory and small enough, else in a
        worker thread (NOTE [Small runs' updates on the event loop])."""
        known = self._plan_ids.peek(run_id)
        plan = self.catalog.prepared_plan(known) if known is not None else None
        if plan is None or _population_size(plan) > _INLINE_WEIGHTS:
            return await self.add_update_async(run_id, lambda: (update, update_id))
        answer: asyncio.Future[RunInfo] = asyncio.get_running_loop().create_future()
        self._submit(run_id, update, update_id, answer)
        try:
            return await answer
        except _PlanChanged:
            return await anyio.to_thread.run_sync(self.add_update, run_id, update, update_id)

    # NOTE [Small runs' updates on the event loop]
    #     Checking and queueing an update (NOTE [Answered on the event loop]) costs little
    #     for a small run: 26 us for 20 indices of a run of 10 000 weights, 61 us of one
    #     of 65 536 (on the 2-core machine of docs/operations/runs-storage.md), most of it
    #     applying the update to the pending state (a copy and a check of the weight
    #     vector: NOTE [Pending epoch state]). A worker thread's round trip costs more (a
    #     queue, a wake-up, the interpreter's lock taken from the busy event loop, a call
    #     back to it): under 32 clients of small updates on PostgreSQL, doing it on the
    #     event loop took 1000-1150 updates/s where the round trip took 930-950. So an
    #     update parsed already (the floor parses small JSON bodies: NOTE [Updates at the
    #     floor] in ``api/update_lane.py``) of a run whose plan is in memory, of at most
    #     ``_INLINE_WEIGHTS`` weights, is checked and queued on the event loop; any other
    #     (a plan to read from the store, a mixture, a larger run) in a worker thread, as
    #     before. Either way the update is the same, checked the same, and queued in the
    #     request's context with its deadline.

    def _wait(self, queued: _Queued) -> RunInfo:
        queued.done.wait()
        if queued.error is not None:
            raise queued.error
        assert queued.result is not None
        return queued.result

    def _submit(
        self,
        run_id: str,
        update: RunUpdate,
        update_id: str | None,
        answer: asyncio.Future[RunInfo] | None = None,
    ) -> _Queued:
        """Accept ``update`` (NOTE [Run updates]), or refuse it and store nothing.

        ``update_id``, chosen by the sender, makes a retried request harmless: an update
        with an id the run has stored already is not applied twice.

        The update waits for the replica's writer, which commits it with the others
        waiting (NOTE [Group commit]); it is answered once that commit is done: the
        :class:`_Queued` returned is then done (and ``answer``, when one is given,
        resolved on its event loop).
        """
        check_run_id(run_id)
        known = self._plan_ids.peek(run_id)  # saves a read per update; checked when stored
        plan = self.catalog.get_any_plan(known) if known is not None else self.plan_of(run_id)[1]
        update.check(_population_size(plan))
        record = _to_record(update, update_id)
        ahead = self._ahead(run_id, plan, update)
        queued = _Queued(
            run_id,
            plan,
            update,
            update_id,
            record,
            ahead,
            contextvars.copy_context(),
            answer=answer,
        )
        # A run's updates always go to the same writer: they never wait for each other's
        # row locks, and batch together.
        self._writers[hash(run_id) % len(self._writers)].submit(queued)
        return queued

    # NOTE [Group commit]
    #     Small updates arrive by the hundreds per second, and a commit costs more than
    #     the update (an fsync on PostgreSQL; on SQLite its one write lock). So each
    #     replica has one writer thread (``_PG_WRITERS`` on PostgreSQL, one now; with
    #     more, each takes its share of the runs, so that they never wait for each other's
    #     row locks): updates queue for it, and it takes every update
    #     waiting (up to ``_BATCH``) into one transaction, locks their runs in the order of
    #     their ids (NOTE [Run transactions]; two replicas' batches never wait for each
    #     other in a cycle), applies each as the unit of work it always was (read, decide, write;
    #     an update refused writes nothing and is answered its error), and commits once.
    #     Only after that commit are the updates answered (and the next epochs' states
    #     remembered, NOTE [Pending epoch state]); a failed commit answers every update
    #     of the batch 503 (none stored, unless the commit itself was cut off after it
    #     landed: the client's retry under the same update id applies it once), and when
    #     the database failed, the updates queued behind the batch too, untried (each
    #     would otherwise wait for its own batch to fail in turn). Each
    #     update is applied in its request's context, so its deadline holds
    #     (NOTE [Deadlines]), checked before its write. A run's update count is written
    #     once per transaction. An idle writer thread ends after a second and starts again
    #     with the next update.

    # NOTE [Answered on the event loop]
    #     An update request's worker thread parses and checks the update and queues it for
    #     the writer (NOTE [Group commit]), then is free: it does not wait for the commit.
    #     The request's coroutine waits on a future instead, which the writer resolves
    #     for a whole batch at once, in one call to the event loop. A thread per update
    #     waiting on the commit had to be woken when it was done, and each woken thread
    #     had then to take the interpreter's lock from the busy event loop (up to the
    #     switch interval, 5 ms, each) before the loop could send its answer: under 32
    #     clients of small updates, most of a batch's updates waited on others' wake-ups.
    #     The answers are those of :meth:`add_update`, which waits in its thread as before
    #     (a run deleted and made again for another plan meanwhile is retried there). A
    #     request cancelled by its timeout stops waiting (its 504 is sent as before); its
    #     update is written or refused as it would have been (NOTE [Deadlines]).

    def _commit_batch(self, batch: list[_Queued]) -> None:
        """Store the updates of ``batch`` in one transaction (NOTE [Group commit])."""
        overlay: dict[tuple[str, str, int], _Pending] = {}
        applied: list[tuple[_Queued, RunRecord, RunTransaction]] = []
        update_ids = {q.update_id for q in batch if q.update_id is not None}
        with self.store.batch() as many:
            run_ids = sorted({q.run_id for q in batch})
            locked = dict(zip(run_ids, many.lock(run_ids, update_ids), strict=True))
            for queued in batch:
                tx = locked[queued.run_id]
                try:
                    # In the request's context: its deadline holds (NOTE [Deadlines]).
                    queued.context.run(self._apply_update, tx, queued, overlay)
                except (SamplingError, _PlanChanged) as exc:
                    queued.error = exc
                    continue
                applied.append((queued, _locked_run(tx), tx))
            frozen = {run_id: tx.frozen_epochs() for run_id, tx in locked.items() if tx.run}
        # Committed: the states are the stored updates', and the answers can go. The
        # states were tagged with provisional seqs; each run's latest one gets the stored
        # seq of the run's last update (a state made before it is outdated by the count).
        for key, pending in overlay.items():
            if key[0] in many.max_seqs:
                pending = replace(pending, max_seq=many.max_seqs[key[0]])
            self._pending.put(key, pending)
        for queued, run, _ in applied:
            self._seen.put(run.id, _incarnation(run))
            queued.result = self._info(run, frozen[run.id])

    def _apply_update(
        self,
        tx: RunTransaction,
        queued: _Queued,
        overlay: dict[tuple[str, str, int], _Pending],
    ) -> None:
        """One update as one unit of work in the batch's transaction
        (NOTE [Run transactions] in ``storage/runs.py``): under the run's lock, read what
        the decision needs, decide (the arithmetic is ``core/runs.py``'s), store it."""
        run_id, plan, update, update_id = (
            queued.run_id,
            queued.plan,
            queued.update,
            queued.update_id,
        )
        run = _locked_run(tx)
        if run.plan_id != plan.id:  # deleted and made again for another plan since
            self._plan_ids.pop(run_id)
            raise _PlanChanged
        stored = tx.stored_update(update_id) if update_id is not None else None
        if stored is not None and not _same_payload(stored, queued.record):
            raise UpdateIdConflict(
                f"run {run_id!r} has stored another update under update_id {update_id!r} "
                f"(epoch {stored.epoch}, rank {stored.rank}, step {stored.step}, op "
                f"{stored.op!r}, {len(stored.indices) // 8} indices); an update id names "
                "one payload: send a new update with a new id"
            )
        # A retried request (its id is stored already, with this very payload) is neither
        # checked nor stored again.
        if stored is not None:
            return
        if update.epoch < run.max_frozen:
            raise EpochFrozen(
                f"epoch {run.max_frozen} of run {run_id!r} is frozen (it has been "
                f"served), so an update sent during epoch {update.epoch} can no longer "
                f"change it; updates are accepted for epoch {run.max_frozen} and later"
            )
        next_epoch = self._next_epoch(tx, run, plan, update, overlay, queued.ahead)
        # A request past its timeout writes nothing (NOTE [Deadlines]); checked before
        # the write, since the batch's other updates commit with it.
        check_deadline()
        seq = tx.add_update(queued.record)
        run = _locked_run(tx)
        if next_epoch is not None:
            pending = _Pending(updates=run.updates, max_seq=seq, state=next_epoch)
            overlay[(*_incarnation(run), update.epoch)] = pending

    def _ahead(self, run_id: str, plan: RunPlan, update: RunUpdate) -> _Ahead | None:
        """``update`` applied to the run's pending state, before the run's lock is taken
        (NOTE [Pending epoch state]); ``None`` when this replica has no such state."""
        seen = self._seen.peek(run_id)
        pending = self._pending.peek((*seen, update.epoch)) if seen is not None else None
        if pending is None:
            return None
        num_samples, replacement, check = _draw_rules(plan)
        try:
            result = pending.state.then(
                update, num_samples=num_samples, replacement=replacement, check=check
            )
        except InvalidRunUpdate as exc:
            return _Ahead(pending=pending, result=None, error=exc)
        return _Ahead(pending=pending, result=result, error=None)

    def _next_epoch(
        self,
        tx: RunTransaction,
        run: RunRecord,
        plan: RunPlan,
        update: RunUpdate,
        overlay: dict[tuple[str, str, int], _Pending],
        ahead: _Ahead | None = None,
    ) -> NextEpoch | None:
        """Check that the weights stay drawable at every epoch with ``update`` among the
        updates (else :class:`InvalidRunUpdate`); answer the weights of epoch
        ``update.epoch + 1`` so far when no later epoch has updates (``None`` otherwise)."""
        num_samples, replacement, check = _draw_rules(plan)
        max_seq, max_epoch = tx.update_totals()
        latest = max_epoch <= update.epoch
        pending = self._pending_state(run, update.epoch, max_seq, overlay)
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
                    update, num_samples=num_samples, replacement=replacement, check=check
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
        self,
        run: RunRecord,
        epoch: int,
        max_seq: int,
        overlay: dict[tuple[str, str, int], _Pending] | None = None,
    ) -> _Pending | None:
        """The state kept for the next epoch if it is still current; ``overlay`` holds the
        states of the batch being written (not committed yet: NOTE [Group commit])."""
        key = (*_incarnation(run), epoch)
        pending = overlay.get(key) if overlay else None
        pending = pending or self._pending.peek(key)
        if pending is None or pending.updates != run.updates or pending.max_seq != max_seq:
            return None
        return pending

    def _replay(
        self,
        tx: RunReads,
        plan: RunPlan,
        stop_epoch: int | None,
        extra: RunUpdate | None = None,
    ) -> tuple[Float64Array, bool]:
        """Weights of epoch ``stop_epoch`` (``None``: after every stored update) and whether
        any update went into them, from the latest frozen epoch before it."""
        plan_weights = _plan_weights(plan)
        num_samples, replacement, check = _draw_rules(plan)
        # Epochs up to the latest frozen one are final: replay from the latest frozen
        # epoch at or before the first epoch that can still change.
        before = stop_epoch if stop_epoch is not None else (extra.epoch + 1 if extra else 2**62)
        first = tx.latest_frozen_before(before)
        weights = plan_weights
        if first is None:
            first = 0
        else:
            weights = self._frozen_weights(tx, plan, first)
        updated = weights is not plan_weights
        stop = stop_epoch if stop_epoch is not None else 2**62
        updates = [_to_update(r) for r in tx.updates_between(first, stop)]
        if extra is not None:
            updates.append(replace(extra, seq=2**62))  # it arrives last
        weights, replayed = replay(
            weights, updates, num_samples=num_samples, replacement=replacement, check=check
        )
        return weights, updated or replayed

    # -- epochs ---------------------------------------------------------------------------

    def epoch_plan(self, run_id: str, epoch: int) -> tuple[RunPlan, EpochPlan]:
        """The run's plan and the prepared plan its epoch ``epoch`` draws from (frozen now);
        a mixture run's epoch is its source weights."""
        _, plan, prepared = self._epoch_plan(run_id, epoch)
        return plan, prepared

    def _epoch_plan(self, run_id: str, epoch: int) -> tuple[RunRecord, RunPlan, EpochPlan]:
        check_epoch(epoch)
        run, plan = self.plan_of(run_id)  # (reading the run records it as seen)
        _check_kept(run, epoch)
        key = (*_incarnation(run), epoch)
        cached = self._frozen.get(key)
        if cached is not None:
            return run, plan, cached
        record = self.store.get_epoch(run_id, epoch)
        if record is None:
            weights = self._freeze(run_id, plan, epoch)
        elif record.keyframe:
            weights = _keyframe_weights(plan, record)
        else:
            # Rebuilt from what is final, in one snapshot of the database (no lock).
            with self.store.snapshot(run_id) as reads:
                found = _locked_run(reads)
                if _incarnation(found) != _incarnation(run):
                    raise RunNotFound(f"no run has id {run_id!r}")
                _check_kept(found, epoch)
                weights = self._frozen_weights(reads, plan, epoch, record)
        prepared: EpochPlan = (
            MixtureEpoch(weights)
            if isinstance(plan, MixturePlan)
            else replace(plan.prepared, weights=weights)
        )
        self._frozen.put(key, prepared)
        return run, plan, prepared

    def _frozen_weights(
        self, reads: RunReads, plan: RunPlan, epoch: int, record: EpochRecord | None = None
    ) -> Float64Array:
        """Frozen epoch ``epoch``'s weights: from memory, its keyframe, or rebuilt from the
        latest keyframe before it (NOTE [How frozen epochs are stored])."""
        run = _locked_run(reads)
        cached = self._frozen.peek((*_incarnation(run), epoch))
        if cached is not None:
            return cached.weights
        if record is None:
            record = reads.epoch(epoch)
        if record is None:
            _check_kept(run, epoch)
            raise StorageUnavailable(f"frozen epoch {epoch} of run {run.id!r} is not stored")
        if record.keyframe:
            return _keyframe_weights(plan, record)
        keyframe = reads.latest_keyframe_before(epoch)
        base_epoch = -1 if keyframe is None else keyframe.epoch
        base: Float64Array | None = None
        # A later frozen epoch in memory is a shorter replay (at most the keyframe spacing
        # of them is looked up).
        for later in range(epoch - 1, max(base_epoch, epoch - 1 - KEYFRAME_EVERY), -1):
            in_memory = self._frozen.peek((*_incarnation(run), later))
            if in_memory is not None:
                base_epoch, base = later, in_memory.weights
                break
        if base is None:
            base = _plan_weights(plan) if keyframe is None else _keyframe_weights(plan, keyframe)
        updates = [_to_update(r) for r in reads.updates_between(max(base_epoch, 0), epoch)]
        num_samples, replacement, check = _draw_rules(plan)
        weights, _ = replay(
            base, updates, num_samples=num_samples, replacement=replacement, check=check
        )
        if _digest(weights) != record.weights_sha256:
            _check_kept(_locked_run(reads), epoch)
            raise StorageUnavailable(
                f"the weights of frozen epoch {epoch} of run {run.id!r}, rebuilt from its "
                "updates, are not the ones frozen; nothing was served from them"
            )
        return weights

    # NOTE [Freezes prepared before the lock]
    #     Freezing an epoch replays the updates since the latest frozen epoch before it
    #     (at most the keyframe spacing of epochs, NOTE [How frozen epochs are stored]) and
    #     hashes the weights: work that grows with the run. It is done first, in a snapshot
    #     of the run without its lock (``_FreezeDraft``), tagged with what it was computed
    #     from: the run's incarnation, update count, largest ``seq``, latest frozen epoch
    #     and first kept epoch. Under the lock, if none of those has moved (no update, no
    #     freeze, no retention since), the draft is the epoch's weights and the lock is
    #     held for reads and writes only; otherwise the replay is done again under the
    #     lock, as before. Updates are applied the same way (NOTE [Pending epoch state]).

    def _draft_freeze(self, run_id: str, plan: RunPlan, epoch: int) -> _FreezeDraft | None:
        """Epoch ``epoch``'s weights computed without the run's lock, or ``None`` when
        there is nothing to prepare (frozen already, not reached, or no such run)."""
        with self.store.snapshot(run_id) as reads:
            run = reads.run
            if run is None or run.plan_id != plan.id or epoch < run.kept_from:
                return None
            if reads.epoch(epoch) is not None:
                return None
            max_seq, max_epoch = reads.update_totals()
            if epoch > max(run.max_frozen, max_epoch, 0) + 1:
                return None  # refused under the lock (NOTE [Reads never end a run])
            pending = self._pending_state(run, epoch - 1, max_seq) if epoch > 0 else None
            if pending is not None:
                weights, updated = pending.state.weights, True
            else:
                weights, updated = self._replay(reads, plan, epoch)
        check_deadline()  # NOTE [Deadlines]
        return _FreezeDraft(_freeze_tag(run, max_seq), weights, updated, _digest(weights))

    def _freeze(self, run_id: str, plan: RunPlan, epoch: int) -> Float64Array:
        """Epoch ``epoch``'s weights, frozen now if no one has frozen it yet: one unit of
        work under the run's lock, as :meth:`add_update`, prepared before it
        (NOTE [Freezes prepared before the lock])."""
        draft = self._draft_freeze(run_id, plan, epoch)
        with self.store.transaction(run_id) as tx:
            run = _locked_run(tx)
            _check_kept(run, epoch)
            existing = tx.epoch(epoch)
            if existing is not None:
                return self._frozen_weights(tx, plan, epoch, existing)
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
            digest = None
            pending = self._pending_state(run, epoch - 1, max_seq) if epoch > 0 else None
            if draft is not None and draft.tag == _freeze_tag(run, max_seq):
                weights, updated, digest = draft.weights, draft.updated, draft.digest
            elif pending is not None:
                weights, updated = pending.state.weights, True
            else:
                weights, updated = self._replay(tx, plan, epoch)
            record = self._epoch_record(tx, epoch, weights, updated, digest)
            check_deadline()  # NOTE [Deadlines]
            tx.freeze(record)
            self._retain(tx, epoch)
            return weights

    def _epoch_record(
        self,
        tx: RunTransaction,
        epoch: int,
        weights: Float64Array,
        updated: bool,
        digest: str | None = None,
    ) -> EpochRecord:
        """How epoch ``epoch`` is stored: NOTE [How frozen epochs are stored]."""
        digest = digest or _digest(weights)
        if not updated:  # the plan's weights: nothing to store
            return EpochRecord(epoch=epoch, weights=None, weights_sha256=digest)
        keyframe = tx.latest_keyframe_before(epoch)
        since = -1 if keyframe is None else keyframe.epoch
        frozen = tx.frozen_between(since + 1, epoch) + 1
        budget = KEYFRAME_UPDATE_SHARE * 8 * int(weights.shape[0])
        if frozen >= KEYFRAME_EVERY or tx.update_bytes_between(max(since, 0), epoch) >= budget:
            whole = np.ascontiguousarray(weights, dtype="<f8").tobytes()
            return EpochRecord(epoch=epoch, weights=whole, weights_sha256=digest)
        base = tx.latest_frozen_before(epoch)
        return EpochRecord(
            epoch=epoch,
            weights=None,
            weights_sha256=digest,
            base_epoch=-1 if base is None else base,
        )

    def _retain(self, tx: RunTransaction, epoch: int) -> None:
        """Drop what the retention setting no longer keeps, once epoch ``epoch`` (the run's
        latest frozen one) is frozen: NOTE [How frozen epochs are stored]."""
        keep = self.catalog.settings.run_keep_epochs
        run = _locked_run(tx)
        if keep is None or epoch != run.max_frozen:
            return
        first_kept = epoch - keep + 1
        if first_kept <= run.kept_from:
            return
        keyframe = tx.latest_keyframe_before(first_kept + 1)
        if keyframe is not None and keyframe.epoch > run.kept_from:
            tx.drop_before(keyframe.epoch)

    def weights(self, run_id: str, epoch: int) -> tuple[RunPlan, Float64Array]:
        """Epoch ``epoch``'s weights (freezing it)."""
        plan, prepared = self.epoch_plan(run_id, epoch)
        self.catalog.check_page(prepared.population_size)
        return plan, prepared.weights

    def epoch_in_flight(self, run_id: str, epoch: int) -> AbstractContextManager[None]:
        """Marks a request for a page of the run's epoch as being served, from its arrival
        (NOTE [Held while in flight] in ``epoch_cache.py``)."""
        seen = self._seen.peek(run_id) or (run_id, "")
        return self.catalog.epoch_in_flight(_stream_key(seen), epoch)

    def indices(self, run_id: str, request: StreamRequest) -> tuple[RunPlan, int, Int64Array]:
        """A page of the run's stream of ``request.epoch`` (freezing the epoch), with the
        run's plan and the epoch's length."""
        run, plan, prepared = self._epoch_plan(run_id, request.epoch)
        if isinstance(plan, MixturePlan):
            drawer = self._mixture_drawer(run, plan)
            return plan, drawer.num_samples_at(request.epoch), self._mixture_page(drawer, request)
        assert isinstance(prepared, PreparedPlan)
        key = _stream_key(_incarnation(run))
        return plan, prepared.num_samples, self.catalog.stream_page(prepared, key, request)

    # NOTE [Run pages at the floor]
    #     A page of a run's frozen epoch is a slice of the epoch's stream, cached under
    #     the run's incarnation like a plan's (``stream_page``), yet every page read the run
    #     from the database first: another process may have deleted the run (its pages
    #     are then a 404, and a run made again under its id is another run) or dropped its
    #     older epochs (a 410), and reading an epoch may freeze it. That read was most of a
    #     page's cost, and put every page in a worker thread.
    #     Each read of a run for its pages (``plan_of``) leaves what the floor needs in
    #     ``_live``: the run's incarnation, its first kept epoch and its plan, with the
    #     runs' generation read just before the run was read (NOTE [The runs'
    #     generation] in ``storage/generation.py``; nothing is left while a deletion or a
    #     drop is under way). :meth:`page_at_floor` answers from
    #     memory only while the generation still holds that value (no run deleted, no
    #     epochs dropped since, by any process of the database), for a kept epoch, when
    #     the epoch's stream is cached under the incarnation: it was drawn from the
    #     epoch's frozen weights, so the epoch is frozen and nothing is left to freeze.
    #     The page is then cut as a plan's page at the floor is (``Catalog.page_at_floor``
    #     under the run's stream key), with the plan's population and length, which are
    #     the run's. Anything else, a mixture run's pages among them, goes to the route,
    #     which reads the run. On PostgreSQL, whose other replicas share no memory with
    #     this one, there is no generation, and every page reads the run as before.

    def page_at_floor(
        self, run_id: str, fields: Mapping[str, Any], binary: bool
    ) -> tuple[RunPlan, Int64Array | None, memoryview | None, int, int] | None:
        """A page of the run's stream as :meth:`Catalog.page_at_floor` gives a plan's,
        answered from memory (NOTE [Run pages at the floor]); ``None`` when the route
        should read the run."""
        generation = self.store.generation
        if generation is None:
            return None
        live = self._live.get_unlocked(run_id)  # on the event loop, which never waits
        if live is None or live.generation != generation.current():
            return None
        if fields["epoch"] < live.kept_from:
            return None  # the route answers 410
        return self.catalog.page_at_floor(live.plan_id, fields, binary, live.stream_key)

    def _mixture_drawer(self, run: RunRecord, plan: MixturePlan) -> RunMixtureDrawer:
        """The drawer of a mixture run's streams (NOTE [Mixture runs]): each epoch's source
        weights are the run's frozen ones (reading them freezes them)."""
        run_id = run.id

        def weights_at(epoch: int) -> Float64Array:
            return self._epoch_plan(run_id, epoch)[2].weights

        return self._mixture_drawers.get_or_build(
            _incarnation(run), lambda: RunMixtureDrawer(plan.mixture, weights_at)
        )

    def _mixture_page(self, drawer: RunMixtureDrawer, request: StreamRequest) -> Int64Array:
        bounds = request.bounds(drawer.num_samples_at(request.epoch))
        self.catalog.check_page(bounds.stop - bounds.first)
        return mixture_page(drawer, request)


class _Live:
    """A run as read for its pages, with the runs' generation read before it (NOTE [Run
    pages at the floor])."""

    __slots__ = ("generation", "kept_from", "plan_id", "stream_key")

    def __init__(self, run: RunRecord, generation: int) -> None:
        self.generation = generation
        self.kept_from = run.kept_from
        self.plan_id = run.plan_id
        self.stream_key = _stream_key(_incarnation(run))


def _stream_key(incarnation: tuple[str, str]) -> str:
    """What a run's epochs are cached under, beside plans' ids: ``run <id> <created>``,
    which no plan's id is (a run id has no space). A string, whose hash Python keeps: the
    floor looks a page's epoch up by it several times per page, and a tuple's hash is
    computed anew each time."""
    run_id, created = incarnation
    return f"run {run_id} {created}"


def _check_kept(run: RunRecord, epoch: int) -> None:
    if epoch < run.kept_from:
        raise EpochPruned(
            f"epoch {epoch} of run {run.id!r} is no longer kept: the service keeps the "
            f"latest frozen epochs only (run_keep_epochs), epoch {run.kept_from} and later"
        )


def _keyframe_weights(plan: RunPlan, record: EpochRecord) -> Float64Array:
    if record.weights is None:
        return _plan_weights(plan)
    return np.frombuffer(record.weights, dtype="<f8")
