"""``RemoteWeightedSampler``: a plan's stream as a ``torch.utils.data.Sampler[int]``.

NOTE [Iteration]
    ``__iter__`` fetches the rank's stream for the current epoch in chunks: the first of
    ``chunk_size`` indices, so the first batch comes quickly, then each twice the last,
    up to ``max_chunk_size``, so a long epoch costs few requests. While the
    ``DataLoader`` consumes one chunk, the next one is
    fetched by a background (daemon) thread, so once started the loader does not wait on
    the network. A chunk is a page ``[offset, offset + chunk_size)`` of the rank's stream:
    the service serves every page as a slice of the whole epoch's stream (cut from it, or
    drawn by skipping ahead to it; never drawn as a short stream of its own), so chunks of
    any size, even 1, join up into exactly the rank's stream. When the loop stops early
    the generator is closed, nothing more is fetched, and a chunk already in flight is
    dropped when it arrives.

NOTE [Resumption]
    ``state_dict()`` is ``{"plan_id", "epoch", "position", "world_size", "start",
    "global_position"}``: ``position`` is how many indices of this iteration's deal the
    sampler has handed out, ``start`` the global position the deal began at (0 but after
    an elastic resume), and ``global_position = min(num_samples, start + position *
    world_size)`` how many positions of the epoch stream all ranks together had consumed,
    if every rank had handed out ``position`` (DDP keeps them in step: one batch each per
    step). With uneven progress, put the minimum over the ranks' states into
    ``global_position``: positions between it and a faster rank's progress are then dealt
    again after the resume, and nothing is skipped. (Loading takes the smaller of
    ``global_position`` and ``start + position * world_size``.)

    ``load_state_dict()`` takes effect at the next ``iter()`` (when the world size is
    known): with the same world size and an unedited state, each rank continues its own
    deal at ``position``, exactly as torchdata's ``StatefulDistributedSampler`` does, so a
    checkpoint written by rank 0 restores every rank. With another world size (elastic
    restart), the rest of the epoch, ``stream[global_position:]``, is dealt over the new
    ranks (NOTE [Dealing] in ``sampleplan/core/dealing.py``): no position of the epoch is
    skipped, none before ``global_position`` repeated, and the ranks' lengths are equal
    (padded by repeating the rest from its beginning, or dropped with ``drop_last``) or
    differ by one (``pad=False``). Every later ``iter()`` deals a whole epoch again;
    ``set_epoch`` to another epoch drops a pending resume. With a plain ``DataLoader``
    and ``num_workers=0`` the position after ``k`` batches is ``k * batch_size``; with
    worker processes the loader prefetches ahead of what was consumed, and only
    torchdata's ``StatefulDataLoader`` (which snapshots the sampler batch by batch) knows
    the consumed position.

NOTE [Ranks, trainers and pickling]
    ``rank`` and ``world_size`` not given are ``torch.distributed``'s, read when needed
    (``len()``, ``iter()``), not at construction: a sampler built before
    ``init_process_group`` (or pickled into spawned processes) deals to the group it runs
    in. The first ``iter()`` fixes the world size; a later one in a process group of
    another size raises ``RuntimeError`` instead of dealing a different stream.

    The sampler is a ``DistributedSampler`` in type, with its attributes
    (``num_replicas``, ``rank``, ``epoch``, ``num_samples`` per rank, ``total_size``,
    ``drop_last``, ``shuffle``, ``seed``): PyTorch Lightning (``use_distributed_sampler``)
    and other trainers then leave it in place instead of wrapping it in a sampler that
    re-shards and reshuffles, and call ``set_epoch`` every epoch.

    It pickles and deep-copies (Lightning's ``ddp_spawn``, ``copy.deepcopy`` of a loader):
    the copy holds the configuration and the position, not the prefetch thread, the
    client's connections or the offline stream, which it rebuilds when it needs them. A
    copy taken during an iteration continues from where the original stood, at its next
    ``iter()``.

Runs and the offline fallback live in modules of their own: NOTE [Runs]
in ``_run_updates.py`` (``run=``, ``update_weights``), NOTE [Offline fallback] in
``_plan_source.py`` (the plan cached at construction, drawn on this machine by the
service's own core when the service cannot be reached).
"""

from __future__ import annotations

import itertools
import operator
import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
from torch.utils.data import DistributedSampler

from sampleplan.client._arguments import check_int, checked_sampler_arguments
from sampleplan.client._cache import PlanCache
from sampleplan.client._chunks import DEFAULT_CHUNK_SIZE, DEFAULT_MAX_CHUNK_SIZE, prefetched_chunks
from sampleplan.client._client import SamplePlanClient
from sampleplan.client._exceptions import SamplePlanError, ServerError, TransportError
from sampleplan.client._models import Plan
from sampleplan.client._offline import OfflineMixture, OfflineStream, offline_stream
from sampleplan.client._plan_source import EpochPages, PlanSource
from sampleplan.client._ranks import distributed_world, refuse_resharding
from sampleplan.client._resumption import Resume, check_state_dict
from sampleplan.client._run_updates import DEFAULT_UPDATE_BATCH_SIZE, RunUpdates
from sampleplan.core.dealing import dealt_length, global_position
from sampleplan.core.runs import UpdateOp
from sampleplan.core.schedules import schedule_from_json
from sampleplan.core.streams import Space, StreamRequest

__all__ = ["RemoteWeightedSampler"]


class RemoteWeightedSampler(DistributedSampler[int]):
    """A sampleplan plan's index stream for one rank, as a ``Sampler[int]``.

    A drop-in for ``WeightedRandomSampler`` (the plan's epoch-``e`` stream is
    ``WeightedRandomSampler(weights, num_samples, replacement,
    generator=torch.Generator().manual_seed(seed + e))``) that also shards across ranks
    as ``DistributedSampler`` does (and is one, for trainers that check), resumes
    mid-epoch, in another world size too, and keeps working from a local cache when the
    service goes away::

        api = SamplePlanClient("http://sampleplan:8000")
        sampler = RemoteWeightedSampler(plan.id, api)
        loader = DataLoader(train_subset, batch_size=64, sampler=sampler)

    A mixture plan's stream is positions in ``ConcatDataset`` of its sources' datasets
    (``DataLoader(ConcatDataset(datasets), sampler=RemoteWeightedSampler(plan.id, api))``),
    dealt, resumed and drawn offline as every stream; an ``hf-interleave`` mixture's
    epochs differ in length, and ``len()`` is the current epoch's.

    Args:
        plan: the plan's id (or the :class:`~client.Plan` itself).
        api: the client to fetch it with; ``None`` draws from the cache only.
        epoch: the epoch to start with; change it with :meth:`set_epoch`.
        rank: this process's rank; default: ``torch.distributed``'s when initialised,
            else 0, read at each ``iter()`` (NOTE [Ranks, trainers and pickling]).
        world_size: how many ranks share each epoch; default: ``torch.distributed``'s
            when initialised, else 1, read likewise.
        drop_last: drop the epoch's ragged tail so every rank gets
            ``num_samples // world_size`` indices, as ``DistributedSampler(drop_last=True)``.
        pad: unless ``drop_last``, pad the tail by repeating the stream from its
            start, as ``DistributedSampler`` (the default); ``False`` gives rank ``r``
            exactly ``stream[r::world_size]``, so the ranks together see every draw once
            (evaluation), with lengths that differ by at most one.
        space: ``"population"`` yields positions in the plan's population (index a
            training ``Subset`` with them); ``"dataset"`` yields dataset indices.
        chunk_size: indices in an epoch's first request; the next chunk, twice as large
            (up to ``max_chunk_size``), is prefetched in the background.
        max_chunk_size: the most indices per request; at most the service's
            ``SAMPLEPLAN_MAX_PAGE``.
        cache_dir: where plans are cached for the offline fallback; default
            ``$SAMPLEPLAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/sampleplan``, else
            ``~/.cache/sampleplan``.
        fallback: cache the plan and draw locally when the service is unreachable. With
            ``False`` nothing is written to disk and errors surface as they come.
        run: draw from this run of the plan (created if new), whose weights
            :meth:`update_weights` changes between epochs; see NOTE [Runs].
        update_batch_size: the most values :meth:`update_weights` sends per request.

    Raises:
        ValueError: bad arguments, in ``torch.utils.data``'s words.
        SamplePlanError: the plan cannot be read (from the service or, offline, the
            cache); while iterating, :class:`~client.StreamMismatchError` when the
            offline fallback cannot reproduce the plan's stream on this machine.
        RuntimeError: at ``iter()``, a process group of another size than the one the
            sampler already dealt to.
    """

    def __init__(
        self,
        plan: str | Plan,
        api: SamplePlanClient | None,
        *,
        epoch: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        pad: bool = True,
        space: Space = "population",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE,
        cache_dir: str | os.PathLike[str] | None = None,
        fallback: bool = True,
        run: str | None = None,
        update_batch_size: int = DEFAULT_UPDATE_BATCH_SIZE,
    ) -> None:
        plan_id = checked_sampler_arguments(
            plan,
            epoch=epoch,
            chunk_size=chunk_size,
            max_chunk_size=max_chunk_size,
            space=space,
            api=api,
            fallback=fallback,
            rank=rank,
            world_size=world_size,
        )
        max_chunk_size = max(max_chunk_size, chunk_size)
        if run is not None:
            if not isinstance(run, str) or not run:
                raise ValueError(f"run should be a run id (a non-empty str), but got run={run!r}")
            if api is None:
                raise ValueError("a run's weights live in the service: run needs an api")
        check_int("update_batch_size", update_batch_size, minimum=1, what="positive")

        self.plan_id = plan_id
        self._rank_arg = rank
        self._world_size_arg = world_size
        self.drop_last = drop_last
        self.pad = pad
        self.space: Space = space
        self.chunk_size = chunk_size
        self.max_chunk_size = max_chunk_size
        self._source = PlanSource(
            plan_id, api, fallback=fallback, cache_dir=cache_dir, offline=offline_stream
        )
        self._epoch = epoch
        self._start = 0
        self._live_chunk: tuple[int, int, Iterator[int]] | None = None
        self._position = 0
        self._iterating = False
        self._used_world_size: int | None = None
        self._resume: Resume | None = None
        self.run = run
        self.update_batch_size = update_batch_size
        self._run_updates: RunUpdates | None = None
        self.plan = self._source.load_plan()
        self._counts: npt.NDArray[np.int64] | None = None
        self._lengths: dict[int, int] = {}  # an hf-interleave mixture's epoch lengths
        self._schedule = schedule_from_json(self.plan.config.get("schedule"))
        if run is not None:
            assert api is not None
            api.create_run(run, self.plan.id)
            self._run_updates = RunUpdates(api, run, batch_size=update_batch_size)
        # DistributedSampler's remaining attributes: the draw is random, seeded by the plan.
        self.shuffle = True
        self.seed = int(self.plan.config.get("seed", 0))

    @property
    def _position(self) -> int:
        """Indices of this iteration's deal handed out so far."""
        live = self._live_chunk
        if live is None:
            return self._position_before_chunk
        before, size, remaining = live
        return before + size - operator.length_hint(remaining)

    @_position.setter
    def _position(self, value: int) -> None:
        self._position_before_chunk = value
        self._live_chunk = None

    # -- pickling (NOTE [Ranks, trainers and pickling]) -------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # The source drops its offline stream and the run's updates their thread, after
        # sending what is buffered (NOTE [Runs]): the copy rebuilds them.
        state = self.__dict__.copy()
        state["_live_chunk"] = None  # the position it counts is folded in just below
        state["_position_before_chunk"] = self._position
        if self._iterating and self._resume is None:
            # The copy continues where this iteration stands.
            world_size = self._used_world_size or 1
            state["_resume"] = Resume(
                world_size,
                self._start,
                self._position,
                global_position(self._draws(), self._start, world_size, self._position),
            )
        state["_iterating"] = False
        return state

    # -- the plan's source (NOTE [Offline fallback]) -----------------------------------------

    @property
    def api(self) -> SamplePlanClient | None:
        """The client; ``None``: cache only."""
        return self._source.api

    @property
    def fallback(self) -> bool:
        """Whether the plan is cached and drawn locally when the service is unreachable."""
        return self._source.fallback

    @property
    def cache(self) -> PlanCache | None:
        """Where the plan is cached for the offline fallback (``None`` without fallback)."""
        return self._source.cache

    # -- ranks (NOTE [Ranks, trainers and pickling]) ----------------------------------------

    def _world(self) -> tuple[int, int]:
        """``(rank, world_size)`` as of now: given, or ``torch.distributed``'s."""
        return distributed_world(self._rank_arg, self._world_size_arg)

    @property
    def rank(self) -> int:
        """This process's rank (given, or ``torch.distributed``'s as of now)."""
        return self._world()[0]

    @rank.setter
    def rank(self, value: int) -> None:
        self._rank_arg = check_int("rank", value, minimum=0, what="non-negative")

    @property
    def world_size(self) -> int:
        """Ranks sharing each epoch (given, or ``torch.distributed``'s as of now)."""
        return self._world()[1]

    @world_size.setter
    def world_size(self, value: int) -> None:
        self._world_size_arg = check_int("world_size", value, minimum=1, what="positive")

    @property
    def num_replicas(self) -> int:
        """``DistributedSampler``'s name for :attr:`world_size`."""
        return self.world_size

    @num_replicas.setter
    def num_replicas(self, value: int) -> None:
        self.world_size = value

    # -- the Sampler protocol --------------------------------------------------------------

    def _draws(self, epoch: int | None = None) -> int:
        """Draws in epoch ``epoch`` (default: the current one), over all ranks: the plan's
        ``num_samples``, or with a ``dynamic_balance`` schedule and ``num_samples`` null,
        the sum of the epoch's quotas, or an hf-interleave mixture's epoch length."""
        if self.plan.is_mixture:
            return self._mixture_length(self._epoch if epoch is None else epoch)
        if self._schedule is None or self.plan.config.get("num_samples") is not None:
            return self.plan.num_samples
        # The schedule is a pure function of the class counts: the same core as the service.
        counts = self._class_counts()
        return (
            self._schedule.num_samples(counts, self._epoch if epoch is None else epoch)
            or self.plan.population_size
        )

    def _mixture_length(self, epoch: int) -> int:
        """A mixture's epoch length: its ``num_samples``, or for ``hf-interleave`` (whose
        stopping strategy ends each epoch) the service's answer for the epoch, else the
        offline drawer's (NOTE [Offline fallback])."""
        if self.plan.config.get("num_samples") is not None:
            return self.plan.num_samples
        if epoch == self.plan.epoch:
            return self.plan.num_samples
        known = self._lengths.get(epoch)
        if known is None:
            if self.api is None:
                known = self._offline_mixture(None).num_samples_at(epoch)
            else:
                try:
                    known = self.api.get_plan(self.plan_id, epoch=epoch).num_samples
                except (TransportError, ServerError) as exc:
                    if self.cache is None:
                        raise
                    known = self._offline_mixture(exc).num_samples_at(epoch)
            self._lengths[epoch] = known
        return known

    def _offline_mixture(self, cause: SamplePlanError | None) -> OfflineMixture:
        drawer = self._source.offline(cause)
        assert isinstance(drawer, OfflineMixture)
        return drawer

    def _offline_stream(self, cause: SamplePlanError | None) -> OfflineStream:
        drawer = self._source.offline(cause)
        assert isinstance(drawer, OfflineStream)
        return drawer

    def _class_counts(self) -> npt.NDArray[np.int64]:
        """Every class's count, read by the page once when the plan's answer was summarised."""
        if self._counts is None:
            if self.plan.classes_complete:
                counts = np.array([row.count for row in self.plan.classes], dtype=np.int64)
            elif self.api is None:
                counts = self._offline_stream(None).class_counts()
            else:
                try:
                    rows = self.api.all_classes(self.plan)
                    counts = np.array([row.count for row in rows], dtype=np.int64)
                except (TransportError, ServerError) as exc:
                    if self.cache is None:
                        raise
                    counts = self._offline_stream(exc).class_counts()
            self._counts = counts
        return self._counts

    @property
    def num_samples(self) -> int:  # type: ignore[override]
        """This rank's indices per epoch, as ``DistributedSampler.num_samples`` (= ``len``)."""
        return len(self)

    @property
    def total_size(self) -> int:  # type: ignore[override]
        """Indices per epoch over all ranks, padding included (``pad=False``: the plan's draws)."""
        if self.drop_last or self.pad:
            return len(self) * self.world_size
        return self._draws()

    @property
    def epoch(self) -> int:
        return self._epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.set_epoch(value)

    def __len__(self) -> int:
        """This rank's share of a whole epoch: ``ceil(num_samples / world_size)`` by default.

        ``floor`` with ``drop_last``; with ``pad=False``, ``ceil((num_samples - rank) /
        world_size)``. An iteration resumed mid-epoch yields fewer.
        """
        rank, world_size = self._world()
        return self._deal_length(0, rank, world_size)

    def _deal_length(self, start: int, rank: int, world_size: int) -> int:
        return dealt_length(
            self._draws(), start, world_size, rank, pad=self.pad, drop_last=self.drop_last
        )

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch`` from the next ``iter()`` on, as ``DistributedSampler.set_epoch``."""
        check_int("epoch", epoch, minimum=0, what="non-negative")
        if epoch != self._epoch:
            if self._run_updates is not None:
                self._run_updates.next_epoch()  # flushed, and every rank's in: NOTE [Runs]
            self._epoch = epoch
            self._start = 0
            self._position = 0
            self._resume = None

    def __iter__(self) -> Iterator[int]:
        rank, world_size = self._world()
        if self._used_world_size is not None and world_size != self._used_world_size:
            raise RuntimeError(
                f"this sampler dealt epochs to world_size={self._used_world_size} and now runs "
                f"in a process group of world_size={world_size}: build a sampler in each "
                "process (or pass world_size), so that no rank gets a different stream"
            )
        if self._world_size_arg is None and world_size > 1:
            refuse_resharding(world_size)
        self._used_world_size = world_size
        start, position = self._resume_point(rank, world_size)
        self._resume = None
        self._start, self._position = start, position
        return self._iterate(self._epoch, start, position, rank, world_size)

    def _resume_point(self, rank: int, world_size: int) -> tuple[int, int]:
        """``(start, position)`` of this iteration; see NOTE [Resumption]."""
        if self._resume is None:
            return 0, 0
        return self._resume.point(
            self._draws(), rank, world_size, pad=self.pad, drop_last=self.drop_last
        )

    def _iterate(
        self, epoch: int, start: int, position: int, rank: int, world_size: int
    ) -> Iterator[int]:
        # chain runs each chunk's list iterator at C speed; the generator below is entered
        # once per chunk, not once per index (a quarter of a warm 1e7 epoch's time).
        return itertools.chain.from_iterable(
            self._chunk_iterators(epoch, start, position, rank, world_size)
        )

    def _chunk_iterators(
        self, epoch: int, start: int, position: int, rank: int, world_size: int
    ) -> Iterator[Iterator[int]]:
        fetch = _ChunkFetcher(self, epoch, start, rank, world_size)
        length = self._deal_length(start, rank, world_size)
        chunks = prefetched_chunks(
            fetch,
            position,
            length,
            self.chunk_size,
            self.max_chunk_size,
            what=f"the stream of plan {self.plan_id}",
        )
        self._iterating = True
        try:
            for chunk in chunks:
                # The position is read off the list iterator only when asked (see
                # _position), not counted per index.
                items = chunk.tolist()
                remaining = iter(items)
                self._live_chunk = (self._position, len(items), remaining)
                yield remaining  # resumed once chain has exhausted it
                self._position = self._position  # fold the finished chunk into the count
        finally:
            self._position = self._position
            self._iterating = False

    # -- runs ---------------------------------------------------------------------------------

    def update_weights(
        self,
        indices: npt.ArrayLike,
        values: npt.ArrayLike,
        *,
        op: UpdateOp = "set",
        alpha: float | None = None,
    ) -> None:
        """Change the weights of the next epochs of the run: see NOTE [Runs].

        ``indices`` are population positions (what this sampler yields with
        ``space="population"``), or for a mixture plan source positions (``0`` for its
        first source, ...), ``values`` one float per index (a mixture's: source weights);
        ``op`` is ``"set"``,
        ``"mul"`` or ``"ema"`` (``w = (1 - alpha) * w + alpha * v``, alpha in (0, 1]).
        Buffered and sent in the background; :meth:`flush_updates` (and ``set_epoch``)
        waits for them.
        """
        if self._run_updates is None:
            raise ValueError("update_weights needs a run: RemoteWeightedSampler(..., run='job-1')")
        self._run_updates.add(
            indices, values, op=op, alpha=alpha, epoch=self._epoch, rank=self.rank
        )

    def flush_updates(self) -> None:
        """Send every buffered update and wait until the service has them (or raise)."""
        if self._run_updates is not None:
            self._run_updates.flush()

    # -- resumption --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Where this rank stands in the epoch; see NOTE [Resumption]."""
        # A checkpoint must not hold a position past updates that were never sent.
        self.flush_updates()
        if self._resume is not None:
            # Loaded but not iterated yet: hand the loaded state on unchanged.
            resume = self._resume
            world_size, start, position = resume.world_size, resume.start, resume.position
            reached = resume.global_position
        else:
            world_size = self._used_world_size or self.world_size
            start, position = self._start, self._position
            reached = global_position(self._draws(), start, world_size, position)
        state: dict[str, Any] = {
            "plan_id": self.plan_id,
            "epoch": self._epoch,
            "position": position,
            "world_size": world_size,
            "start": start,
            "global_position": reached,
        }
        if self._run_updates is not None:
            state["run"] = self.run
            state["update_step"] = self._run_updates.step
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continue from ``state_dict`` at the next ``iter()``, in this world size or another."""
        check_state_dict(state_dict, self.plan_id)
        if state_dict.get("run") != self.run:
            raise ValueError(
                f"state_dict is for run {state_dict.get('run')!r}, "
                f"this sampler draws run {self.run!r}"
            )
        epoch = check_int("epoch", state_dict["epoch"], minimum=0, what="non-negative")
        resume = Resume.from_state_dict(state_dict, self._draws(epoch))
        self._epoch = epoch
        self._start = 0
        self._position = 0
        self._resume = resume
        if self._run_updates is not None:
            self._run_updates.step = check_int(
                "update_step", state_dict.get("update_step", 0), minimum=0, what="non-negative"
            )

    def __repr__(self) -> str:
        rank, world_size = self._world()
        return (
            f"{type(self).__name__}(plan={self.plan_id[:12]}…, epoch={self._epoch}, "
            f"rank={rank}, world_size={world_size}, len={len(self)})"
        )


class _ChunkFetcher:
    """Fetches chunks of one epoch: from the service, or offline once it is unreachable."""

    def __init__(
        self, sampler: RemoteWeightedSampler, epoch: int, start: int, rank: int, world_size: int
    ) -> None:
        self.sampler = sampler
        # This rank's stream of the epoch, dealt as the sampler deals it; a chunk is a page.
        self.stream = StreamRequest(
            epoch=epoch,
            rank=rank,
            world_size=world_size,
            space=sampler.space,
            start=start,
            pad=sampler.pad,
            drop_last=sampler.drop_last,
            check=False,
        )
        self.pages = EpochPages(sampler._source, epoch)

    def __call__(self, offset: int, limit: int) -> npt.NDArray[np.int64]:
        s = self.sampler
        request = replace(self.stream, offset=offset, limit=limit, check=False)
        if s.run is not None:
            # A run's weights live in the service: no offline fallback (NOTE [Runs]).
            assert s.api is not None
            return s.api.run_indices(s.run, **request.keywords())
        return self.pages(
            lambda api: api.indices(s.plan_id, **request.keywords()),
            lambda offline: offline.indices(request),
        )
