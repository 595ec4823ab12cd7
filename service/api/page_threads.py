"""A small, separate set of worker-thread tokens for the work behind a page of a stream.

NOTE [Page threads]
    A page that is not a slice of a cached epoch is served from a worker thread: the
    plan may be read from the store, the epoch drawn, the rank's shard cut and written
    out. That work is CPU and numpy, and holds the GIL between numpy calls. Starlette's
    threadpool admits 40 threads at once (it is sized for blocking I/O), and when 64
    ranks ask for their shards of one cold epoch, 40 of them wait on the one draw (NOTE
    [Single flight]) and then wake together: 40 runnable threads and the event loop
    passing the GIL between them, the loop getting its turn one time in 41. Measured
    under ``make load``'s fan-out (1e7 draws, 64 ranks, 2 cores), ``/healthz`` probes
    sent meanwhile had a p99 of 48-114 ms. Bounding only the copying after the wait did
    not help (47-94 ms): 40 threads woken at once contend for the GIL before they reach
    any bound.

    So pages run on their own :class:`anyio.CapacityLimiter` of ``page_threads`` tokens
    (default: twice the CPUs the process may use, 4 on 2 cores): the same probes had a
    p99 of 9-13 ms, and the 64 ranks were done sooner (0.28-0.38 s). More threads would
    not draw or cut any faster on those cores; requests beyond them wait in the
    limiter's queue, which costs no thread. A request waiting there may come to the
    epoch cache after the draw it arrived in time for has finished: NOTE [Held while in
    flight] in ``epoch_cache.py`` keeps that draw for it even when the cache cannot.
    Other blocking work (uploads, store writes, run updates waiting on a lock) keeps
    Starlette's threadpool, so it is never stuck behind a burst of pages.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
from starlette.types import Scope

__all__ = ["default_page_threads", "page_limiter", "run_page_work"]

T = TypeVar("T")


def default_page_threads() -> int:
    """Twice the CPUs this process may run on (its affinity, not the machine's count)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return 2 * max(1, cpus)


def page_limiter(threads: int | None) -> anyio.CapacityLimiter:
    """A limiter of ``threads`` tokens (``None``: :func:`default_page_threads`)."""
    return anyio.CapacityLimiter(threads if threads is not None else default_page_threads())


async def run_page_work(scope: Scope, work: Callable[[], T]) -> T:
    """``work()`` in a worker thread, holding one of the app's page-thread tokens."""
    limiter: anyio.CapacityLimiter = scope["app"].state.page_limiter
    return await anyio.to_thread.run_sync(work, limiter=limiter)
