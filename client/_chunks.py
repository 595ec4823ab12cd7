"""An epoch fetched in growing chunks, the next one prefetched while the loader reads this one.

Both remote samplers read a rank's epoch this way (NOTE [Iteration] in ``_sampler.py``,
NOTE [Batch iteration] in ``_batch_sampler.py``): the first request is small, so the
first batch comes quickly; each next one is twice the last, up to a ceiling, so a long
epoch costs few requests; and it is fetched by a background (daemon) thread while the
caller consumes the chunk before it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from sampleplan.client._exceptions import SamplePlanError

__all__ = ["DEFAULT_CHUNK_SIZE", "DEFAULT_MAX_CHUNK_SIZE", "Prefetch", "prefetched_chunks"]

T = TypeVar("T")

#: Indices in the first request of an epoch (512 KiB as int64): a small first wait.
DEFAULT_CHUNK_SIZE = 65536
#: The most indices per request once chunks have grown (8 MiB as int64): few requests
#: per epoch. It must not exceed the service's SAMPLEPLAN_MAX_PAGE (10**7 by default).
DEFAULT_MAX_CHUNK_SIZE = 1 << 20


class Prefetch(Generic[T]):
    """``fn()`` run in a daemon thread; :meth:`result` waits for it (and re-raises)."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._value: T
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sampleplan-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._error = exc

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def prefetched_chunks(
    fetch: Callable[[int, int], npt.NDArray[np.int64]],
    offset: int,
    length: int,
    limit: int,
    most: int,
    *,
    what: str,
) -> Iterator[npt.NDArray[np.int64]]:
    """The rows ``[offset, length)``, as chunks ``fetch(offset, limit)``.

    Each ``limit`` is twice the last, up to ``most``; the next chunk is fetched in the
    background before this one is yielded. Closed early, nothing more is fetched, and a
    chunk already in flight is dropped when it arrives. A chunk that comes back empty
    before ``length`` raises :class:`~client.SamplePlanError` ("``what`` ended at ...").
    """
    pending = Prefetch(functools.partial(fetch, offset, limit)) if offset < length else None
    while pending is not None:
        chunk = pending.result()
        if chunk.shape[0] == 0:
            raise SamplePlanError(f"{what} ended at {offset} of {length}")
        offset += int(chunk.shape[0])
        limit = min(2 * limit, most)
        pending = Prefetch(functools.partial(fetch, offset, limit)) if offset < length else None
        yield chunk
