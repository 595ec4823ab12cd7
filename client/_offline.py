"""A plan's streams drawn on this machine, from its cached copy, by the service's own core.

NOTE [Offline streams]
    For algorithm ``torch`` a page of a rank's stream is, here::

        cut_page(draw_torch_epoch(weights, num_samples, replacement, epoch_seed(seed, epoch)),
                 num_samples, StreamRequest(...), population)

    with every function from :mod:`service.core`, as the service cuts pages. The service
    draws with replacement through :mod:`service.core.exact` instead, which reproduces
    ``torch.multinomial`` bit for bit (``tests/core/test_exact.py``), so the two cannot
    drift apart. What they cannot share is the machine: ``torch.multinomial`` is not
    promised across torch releases or CPU architectures, so the versions the plan recorded
    are checked (:func:`service.core.plan.reproduction_problems`) before anything is
    drawn, and a mismatch is refused with :class:`~client.StreamMismatchError` rather
    than producing a stream that silently differs. Algorithms other than ``torch`` are refused too:
    their streams cannot be rebuilt from per-sample weights alone.
"""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt

from client._cache import CachedPlan
from client._exceptions import StreamMismatchError
from service.core.plan import reproduction_problems
from service.core.splitting import split_from_canonical
from service.core.streams import Space, StreamRequest, cut_page, draw_torch_epoch, epoch_seed

__all__ = ["OfflineStream"]


class OfflineStream:
    """Pages of a cached plan's streams, bit-identical to the service's (or refused)."""

    def __init__(self, cached: CachedPlan) -> None:
        plan = cached.plan
        if plan.algorithm != "torch":
            raise StreamMismatchError(
                f"plan {plan.id} uses algorithm {plan.algorithm!r}, which this client cannot "
                f"reproduce offline (only 'torch' plans can be)"
            )
        problems = reproduction_problems(plan.versions)
        if problems:
            raise StreamMismatchError(
                f"cannot reproduce the stream of plan {plan.id} here, since torch does not promise "
                f"the same stream across versions or CPU architectures: {'; '.join(problems)}"
            )
        self.plan = plan
        self._cached = cached
        self._lock = threading.Lock()
        self._epoch: tuple[int, npt.NDArray[np.int64]] | None = None
        self._population: npt.NDArray[np.int64] | None = None

    def _epoch_stream(self, epoch: int) -> npt.NDArray[np.int64]:
        # A sampler asks for an epoch page by page: draw the epoch once, keep the last one.
        if self._epoch is None or self._epoch[0] != epoch:
            stream = draw_torch_epoch(
                self._cached.weights,
                self.plan.num_samples,
                self.plan.replacement,
                epoch_seed(self.plan.seed, epoch),
            )
            self._epoch = (epoch, stream)
        return self._epoch[1]

    def _dataset_indices(self) -> npt.NDArray[np.int64] | None:
        split = split_from_canonical(self.plan.config.get("split"))
        if split is None:
            return None
        if self._population is None:
            self._population = split.training_indices(self._cached.dataset.size)
        return self._population

    def indices(
        self,
        *,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        offset: int = 0,
        limit: int | None = None,
        space: Space = "population",
    ) -> npt.NDArray[np.int64]:
        """The page that ``SamplePlanClient.indices`` would return for these arguments."""
        request = StreamRequest(
            epoch=epoch, rank=rank, world_size=world_size, offset=offset, limit=limit, space=space
        )
        with self._lock:
            stream = self._epoch_stream(epoch)
            population = self._dataset_indices() if space == "dataset" else None
        return cut_page(stream, self.plan.num_samples, request, population)
