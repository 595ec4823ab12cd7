"""``RemoteBatchSampler``: a batch plan's batches as a ``DataLoader`` ``batch_sampler``.

NOTE [Batch iteration]
    ``__iter__`` yields the rank's batches of the current epoch as lists of indices,
    fetched in chunks of whole batches (``GET /v1/plans/{id}/batches``): the first chunk
    holds about ``chunk_size`` indices, each next one twice as many, up to
    ``max_chunk_size``; while the ``DataLoader`` consumes one chunk, the next is fetched by
    a background (daemon) thread, as :class:`~client.RemoteWeightedSampler` does. Every
    batch depends only on (plan, epoch, batch index) (NOTE [batches-v1], [batches-v2]), so
    chunks of any size join up into exactly the rank's batches.

NOTE [Batch resumption]
    ``state_dict()`` is ``{"plan_id", "epoch", "position", "world_size"}``, ``position``
    being how many batches of the epoch this sampler has handed out; after
    ``load_state_dict()`` the next ``iter()`` starts there (every later one at 0). torchdata's
    ``StatefulDataLoader`` snapshots it batch by batch, so a loader restored from its
    ``state_dict()`` goes on with exactly the batches it had not delivered, with or
    without worker processes (the batch sampler runs in the main process).

NOTE [Pickling]
    ``ddp_spawn`` and worker start-up pickle what a loader holds. The pickled state is
    plain data: the plan, the position, and the client, which pickles as its URL, token,
    timeout and retry policy; no thread, lock, connection pool or offline table. They
    are rebuilt lazily on first use. A client built on an injected ``http_client`` cannot
    be rebuilt, so such a sampler refuses to be pickled (the client raises ``TypeError``).
    ``rank`` and ``world_size`` left to their defaults are read from ``torch.distributed``
    when used, not when built, so a sampler made before ``init_process_group`` (or in a
    parent process) gets its rank right.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
from torch.utils.data import Sampler

from sampleplan.client._arguments import check_int, checked_sampler_arguments
from sampleplan.client._cache import PlanCache
from sampleplan.client._chunks import DEFAULT_CHUNK_SIZE, DEFAULT_MAX_CHUNK_SIZE, prefetched_chunks
from sampleplan.client._client import SamplePlanClient
from sampleplan.client._models import Plan
from sampleplan.client._offline import offline_batches
from sampleplan.client._plan_source import EpochPages, PlanSource
from sampleplan.client._ranks import distributed_world
from sampleplan.client._resumption import check_state_dict
from sampleplan.core.batches import Batching, batching_from_json
from sampleplan.core.streams import Space, StreamRequest, rank_length

__all__ = ["RemoteBatchSampler"]


class RemoteBatchSampler(Sampler[list[int]]):
    """A batch plan's batches for one rank, for ``DataLoader(dataset, batch_sampler=...)``.

    Every batch meets the plan's ``batching`` contract exactly (``m_per_class``: ``m``
    samples of each of ``batch_size // m`` distinct classes; ``class_quota``: the named
    count of each class); ranks take whole batches, ``batches[rank::world_size]``, the
    same number each::

        plan = api.create_plan(labels=targets, batching={"kind": "m_per_class", "m": 4,
                                                         "batch_size": 32})
        loader = DataLoader(train, batch_sampler=RemoteBatchSampler(plan.id, api))

    Args:
        plan: the plan's id (or the :class:`~client.Plan` itself); it must have ``batching``.
        api: the client to fetch it with; ``None`` draws from the cache only.
        epoch: the epoch to start with; change it with :meth:`set_epoch`.
        rank: this process's rank; default: ``torch.distributed``'s when initialised
            (read when used), else 0.
        world_size: ranks sharing each epoch; default: ``torch.distributed``'s when
            initialised (read when used), else 1.
        space: ``"population"`` positions (index a training ``Subset``) or ``"dataset"``
            indices.
        chunk_size: about how many indices the first request of an epoch fetches (whole
            batches, at least one); the next chunk, twice as large, is prefetched.
        max_chunk_size: the most indices per request; at most the service's
            ``SAMPLEPLAN_MAX_PAGE``.
        cache_dir: where plans are cached for the offline fallback (see
            :class:`~client.RemoteWeightedSampler`).
        fallback: cache the plan and draw locally when the service is unreachable.

    Raises:
        ValueError: bad arguments, or a plan without ``batching``.
        SamplePlanError: the plan cannot be read (from the service or, offline, the
            cache); while iterating, :class:`~client.StreamMismatchError` when the cached
            copy cannot reproduce the batches.
    """

    def __init__(
        self,
        plan: str | Plan,
        api: SamplePlanClient | None,
        *,
        epoch: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        space: Space = "population",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE,
        cache_dir: str | os.PathLike[str] | None = None,
        fallback: bool = True,
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
        self.plan_id = plan_id
        self._rank_arg = rank
        self._world_size_arg = world_size
        self.space: Space = space
        self.chunk_size = chunk_size
        self.max_chunk_size = max(max_chunk_size, chunk_size)
        self.cache_dir = cache_dir
        self._source = PlanSource(
            plan_id,
            api,
            fallback=fallback,
            cache_dir=cache_dir,
            offline=offline_batches,
            codes=True,  # the batches depend on the classes
        )
        self._epoch = epoch
        self._position = 0
        self._resume_pending = False
        self.plan = self._source.load_plan(check=_batching)
        self.batch_size: int = _batching(self.plan).batch_size
        self.num_batches: int = int(self.plan.config["num_batches"])

    # -- the plan's source and the ranks (NOTE [Pickling]) -----------------------------------

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

    @property
    def rank(self) -> int:
        return distributed_world(self._rank_arg, self._world_size_arg)[0]

    @property
    def world_size(self) -> int:
        return distributed_world(self._rank_arg, self._world_size_arg)[1]

    # -- the Sampler protocol --------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self._epoch

    def __len__(self) -> int:
        """This rank's batches per epoch: ``ceil(num_batches / world_size)``."""
        return rank_length(self.num_batches, self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch`` from the next ``iter()`` on, as ``DistributedSampler.set_epoch``."""
        check_int("epoch", epoch, minimum=0, what="non-negative")
        if epoch != self._epoch:
            self._epoch = epoch
            self._position = 0
            self._resume_pending = False

    def __iter__(self) -> Iterator[list[int]]:
        start = self._position if self._resume_pending else 0
        self._resume_pending = False
        self._position = start
        return self._iterate(self._epoch, start, self.rank, self.world_size)

    def _iterate(self, epoch: int, start: int, rank: int, world_size: int) -> Iterator[list[int]]:
        if not 0 <= rank < world_size:
            raise ValueError(
                f"Invalid rank {rank}, rank should be in the interval [0, {world_size - 1}]"
            )
        fetch = _BatchFetcher(self, epoch, rank, world_size)
        chunks = prefetched_chunks(
            fetch,
            start,
            rank_length(self.num_batches, world_size),
            max(1, self.chunk_size // self.batch_size),
            max(1, self.max_chunk_size // self.batch_size),
            what=f"the batches of plan {self.plan_id}",
        )
        for chunk in chunks:
            for batch in chunk.tolist():
                self._position += 1
                yield batch

    # -- resumption --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"plan_id", "epoch", "position", "world_size"}``; see NOTE [Batch resumption]."""
        return {
            "plan_id": self.plan_id,
            "epoch": self._epoch,
            "position": self._position,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continue from ``state_dict``: the next ``iter()`` starts where it stopped."""
        check_state_dict(state_dict, self.plan_id)
        if state_dict["world_size"] != self.world_size:
            raise ValueError(
                f"state_dict was saved with world_size={state_dict['world_size']}, this sampler "
                f"has world_size={self.world_size}: a rank's batches do not carry over"
            )
        epoch = check_int("epoch", state_dict["epoch"], minimum=0, what="non-negative")
        position = check_int("position", state_dict["position"], minimum=0, what="non-negative")
        if position > len(self):
            raise ValueError(
                f"position should be at most len(sampler)={len(self)}, but got position={position}"
            )
        self._epoch = epoch
        self._position = position
        self._resume_pending = True

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(plan={self.plan_id[:12]}…, epoch={self._epoch}, "
            f"rank={self.rank}, world_size={self.world_size}, batch_size={self.batch_size}, "
            f"len={len(self)})"
        )


class _BatchFetcher:
    """Fetches chunks of batches of one epoch: from the service, or offline once it is gone."""

    def __init__(self, sampler: RemoteBatchSampler, epoch: int, rank: int, world_size: int) -> None:
        self.sampler = sampler
        # This rank's batches of the epoch; a chunk is a page of them.
        self.stream = StreamRequest(
            epoch=epoch, rank=rank, world_size=world_size, space=sampler.space, check=False
        )
        self.pages = EpochPages(sampler._source, epoch)

    def __call__(self, offset: int, limit: int) -> npt.NDArray[np.int64]:
        s = self.sampler
        request = replace(self.stream, offset=offset, limit=limit, check=False)
        return self.pages(
            lambda api: api.batches(s.plan_id, **request.keywords()),
            lambda offline: offline.batches(request),
        )


def _batching(plan: Plan) -> Batching:
    """The plan's batching; :class:`ValueError` for a plan without."""
    if plan.is_mixture:
        raise ValueError(
            f"plan {plan.id} is a mixture of sources, which has no batches: draw it with "
            "RemoteWeightedSampler and a batch_size (mixture-v1's block set to the batch size "
            "makes every batch's composition exact)"
        )
    batching = batching_from_json(plan.config.get("batching"))
    if batching is None:
        raise ValueError(
            f"plan {plan.id} has no 'batching': RemoteBatchSampler serves batch plans "
            "(create one with batching=...), RemoteWeightedSampler serves the others"
        )
    return batching
