"""A bounded, thread-safe cache of drawn epoch streams, filled at most once per key.

Algorithm ``torch`` can only produce a page of an epoch by drawing the epoch (or, with the
exact path, by skipping everything before the page). A client paging through an epoch
of 1e7 draws in pages of 1e5 would otherwise pay for a hundred draws. The cache keeps
whole epoch streams, keyed by ``(plan_id, epoch)``, in least-recently-used order within
a budget of bytes.

NOTE [Single flight]
    Several requests for the same cold epoch (ranks of one job starting together, or a
    client prefetching pages) must not each draw it. The first request registers a
    :class:`~concurrent.futures.Future` for the key and draws outside the lock; the others
    find the future and wait on it. A failed draw is handed to every waiter and nothing
    is cached, so the next request tries again.
    The draw runs under the latest deadline of the requests waiting for it (a
    ``SharedDeadline``, NOTE [Deadlines]): the first request timing out does not stop a
    draw others still wait for, and a draw no one can use any more stops at its next
    chunk. A waiter waits until its own deadline at most. A waiter handed a draw stopped
    at a deadline that is not its own (it joined as the draw gave up) asks again.

NOTE [Held while in flight]
    A request that waits for a worker thread (NOTE [Page threads]) may reach the cache
    after a draw it arrived in time for has finished. If the cache could keep that stream
    (it fits the budget), it finds it there. If not (a budget of 0, or an epoch larger than
    the budget), the stream is *held* outside the budget for as long as any request for
    its key is in flight (:meth:`EpochCache.in_flight`, entered when the request arrives),
    so those requests share the one draw instead of each drawing again. The memory is
    what those requests would hold anyway, each with a copy of its own.

Cached arrays are made read-only: they are shared by every request that reads them.
"""

from __future__ import annotations

import array
import math
import threading
import weakref
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from sampleplan.core.deadlines import SharedDeadline, check_deadline, remaining
from sampleplan.core.errors import DeadlineExceeded
from sampleplan.core.lru import LRUCache
from sampleplan.core.streams import Space, in_space

__all__ = ["TEXT_INDEX_VALUES", "EpochCache", "EpochCacheStats", "EpochTexts"]

Int64Array = npt.NDArray[np.int64]

#: How many cold keys :meth:`EpochCache.first_touch` remembers.
_TOUCHED_KEYS = 4096


def _nbytes(stream: Int64Array) -> int:
    return int(stream.nbytes)


@dataclass(frozen=True)
class EpochCacheStats:
    """Counters since the cache was made, and what it holds now."""

    hits: int
    misses: int
    draws: int
    evictions: int
    entries: int
    bytes: int
    max_bytes: int


class EpochCache:
    """Epoch streams by key, at most ``max_bytes`` of them, least recently used evicted.

    ``max_bytes=0`` keeps nothing, but concurrent requests still share one draw.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(
                f"max_bytes should be a non-negative integer, but got max_bytes={max_bytes}"
            )
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # Its own lock guards each of the LRUs; ``_lock`` keeps them and the rest in step.
        self._entries: LRUCache[Hashable, Int64Array] = LRUCache(max_bytes, size=_nbytes)
        self._pending: dict[Hashable, Future[Int64Array]] = {}
        self._deadlines: dict[Hashable, SharedDeadline] = {}  # the pending draws'
        self._touched: LRUCache[Hashable, bool] = LRUCache(_TOUCHED_KEYS)
        self._in_flight: dict[Hashable, int] = {}
        self._held: dict[Hashable, Int64Array] = {}
        self._hits = 0
        #: Hits of :meth:`get_unlocked`, which only the event loop's thread adds to.
        self._unlocked_hits = 0
        self._misses = 0
        self._draws = 0

    def __contains__(self, key: Hashable) -> bool:
        """Whether ``key`` is cached (or held) now (not counted as a hit, not refreshed)."""
        with self._lock:
            return key in self._entries or key in self._held

    def get(self, key: Hashable) -> Int64Array | None:
        """The cached stream, or ``None``; never draws. A hit refreshes the key."""
        with self._lock:
            return self._lookup(key)

    def get_unlocked(self, key: Hashable) -> Int64Array | None:
        """:meth:`get` without the lock, for the event loop's thread (the floor's pages,
        NOTE [Serving at the floor] in ``service/api/floor.py``): two lookups, each one
        call into C code another thread cannot interrupt (:meth:`LRUCache.get_unlocked`,
        then the held streams). A stream moving from held to cached between the two is
        not found, and the caller goes the locked way. Its hits are counted apart, by that
        thread alone, and added in :meth:`stats`."""
        stream = self._entries.get_unlocked(key)
        if stream is None:
            stream = self._held.get(key)
            if stream is None:
                return None
        self._unlocked_hits += 1
        return stream

    def peek(self, key: Hashable) -> Int64Array | None:
        """The cached (or held) stream, or ``None``, neither counted as a hit nor
        refreshed: a look before deciding whether to serve from it."""
        with self._lock:
            stream = self._entries.peek(key)
            return self._held.get(key) if stream is None else stream

    def _lookup(self, key: Hashable) -> Int64Array | None:
        """The cached (or held) stream, counted and refreshed as a hit, or ``None``; lock held."""
        stream = self._entries.get(key)
        if stream is None:
            stream = self._held.get(key)
        if stream is not None:
            self._hits += 1
        return stream

    @contextmanager
    def in_flight(self, key: Hashable) -> Iterator[None]:
        """A request for ``key`` is being served; see NOTE [Held while in flight]."""
        with self._lock:
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                remaining = self._in_flight[key] - 1
                if remaining:
                    self._in_flight[key] = remaining
                else:
                    del self._in_flight[key]
                    self._held.pop(key, None)

    def first_touch(self, key: Hashable) -> bool:
        """``True`` the first time a key that is neither cached nor being drawn is asked about.

        Lets the catalog serve a lone page of a cold epoch without drawing all of it, and
        fill the cache once the same epoch is asked for again.
        """
        with self._lock:
            known = self._entries, self._held, self._pending, self._touched
            if any(key in where for where in known):
                return False
            self._touched.put(key, True)
            return True

    def get_or_draw(self, key: Hashable, draw: Callable[[], Int64Array]) -> Int64Array:
        """The stream for ``key``, calling ``draw()`` only if no one has it or is drawing it.

        See NOTE [Single flight]. Exceptions from ``draw`` reach every waiting caller.
        """
        while True:
            with self._lock:
                stream = self._lookup(key)
                if stream is not None:
                    return stream
                self._misses += 1
                pending = self._pending.get(key)
                if pending is None:
                    shared = SharedDeadline()
                    future: Future[Int64Array] = Future()
                    self._pending[key] = future
                    self._deadlines[key] = shared
                    self._draws += 1
                shared = self._deadlines[key]
                shared.join()
            if pending is None:
                break
            try:
                left = remaining()
                return pending.result(timeout=None if math.isinf(left) else max(0.0, left))
            except FutureTimeout:
                raise DeadlineExceeded(
                    "the request's timeout passed while it waited for the epoch being drawn"
                ) from None
            except DeadlineExceeded:
                check_deadline()  # this waiter's own deadline passed too
                # The draw stopped at the others' deadlines just as this one joined.
        try:
            with shared.applied():
                stream = draw()
            stream.flags.writeable = False
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
                del self._deadlines[key]
            future.set_exception(exc)
            raise
        with self._lock:
            del self._pending[key]
            del self._deadlines[key]
            self._touched.pop(key)
            # Kept if it fits the budget (evicting the least recently used), else held.
            if not self._entries.put(key, stream) and key in self._in_flight:
                self._held[key] = stream
        future.set_result(stream)
        return stream

    def clear(self) -> None:
        """Forget every cached stream (draws in flight finish and are cached)."""
        with self._lock:
            self._entries.clear()
            self._touched.clear()

    def stats(self) -> EpochCacheStats:
        with self._lock:
            return EpochCacheStats(
                hits=self._hits + self._unlocked_hits,
                misses=self._misses,
                draws=self._draws,
                evictions=self._entries.evictions,
                entries=len(self._entries),
                bytes=self._entries.total,
                max_bytes=self.max_bytes,
            )


# NOTE [Numbers written once]
#     A JSON page of 1000 indices spent half of its own cost writing the numbers (orjson
#     over the page's slice of the epoch), again for every request, though the epoch's
#     numbers never change while it is cached. :class:`EpochTexts` writes a cached
#     epoch's numbers once, as the JSON text of the whole epoch (in one space) with the
#     byte where each number starts; a page of one rank (a contiguous slice of the epoch)
#     is then one slice of bytes. orjson writes a number the same whatever surrounds it,
#     so the slice is byte for byte what writing the page alone gives.
#     A binary page is one slice of bytes too: the epoch's values as little-endian int64,
#     written once, in place of a slice of the array converted and copied out on every
#     request (four numpy calls, a third of a binary page's own time at the floor).
#     The text is kept only for epochs of at most :data:`TEXT_INDEX_VALUES` values (its
#     first writing, on the event loop, stays short), within a budget of bytes of its
#     own, and never outlives the stream it was written from: it refers to the stream
#     weakly, and a stream drawn again (an epoch evicted, then drawn anew) is written
#     again.
#     An epoch of batches (NOTE [An epoch of batches drawn whole] in ``catalog.py``) is
#     a matrix, one batch a row, and a page of one rank is a run of rows: the text is the
#     rows' JSON, ``[..],[..]``, with the byte where each row starts, and the bytes are
#     the rows' values, a row's worth of them per row; so a page is one slice again.

#: Most values of an epoch whose numbers :class:`EpochTexts` writes (about 4 ms of
#: writing and 4 MB of text for the largest).
TEXT_INDEX_VALUES = 1 << 18


class _EpochText:
    __slots__ = ("nbytes", "row", "starts", "stream", "text", "view")

    def __init__(self, stream: Int64Array, values: Int64Array, binary: bool) -> None:
        self.stream = weakref.ref(stream)
        native = np.ascontiguousarray(values, dtype=np.int64)
        self.starts: array.array[int] | None = None
        # A row is one value of an epoch stream, one batch of a matrix of batches.
        self.row = int(np.prod(native.shape[1:], dtype=np.int64))
        if binary:
            # The values as a binary page carries them: little-endian int64, 8 bytes each.
            self.text: bytes = native.astype("<i8", copy=False).tobytes()
            self.row *= 8
            self.nbytes = len(self.text)
            self.view = memoryview(self.text)
            return
        self.text = orjson.dumps(native, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
        characters = np.frombuffer(self.text, dtype=np.uint8)
        if native.ndim == 1:
            # Number i begins after the i-th comma.
            inner = np.flatnonzero(characters == ord(",")) + 1
            first = [0]
        else:
            # Row i begins with its bracket (the first row's at byte 0).
            inner = np.flatnonzero(characters == ord("["))
            first = []
        # starts[i]: where row i begins; starts[n] one past the end, as if a comma ended it.
        bounds = np.concatenate((first, inner, [len(self.text) + 1])).astype(np.int64)
        self.starts = array.array("q", bounds.tobytes())
        self.nbytes = len(self.text) + 8 * len(self.starts)
        self.view = memoryview(self.text)


class EpochTexts:
    """Cached epochs' numbers written once, as JSON text or as a binary page's bytes; see
    NOTE [Numbers written once]."""

    def __init__(self, max_bytes: int) -> None:
        self._entries: LRUCache[Hashable, _EpochText] = LRUCache(
            max_bytes, size=lambda entry: entry.nbytes
        )

    def numbers(
        self,
        key: Hashable,
        stream: Int64Array,
        space: Space,
        population: Int64Array | None,
        first: int,
        stop: int,
        binary: bool = False,
    ) -> memoryview | None:
        """The JSON text of ``stream``'s values ``[first:stop]`` in ``space`` (mapped by
        ``population``, :func:`~sampleplan.core.streams.in_space`; ``key`` names the
        stream in that space and form), without brackets, or with ``binary`` their
        little-endian int64 bytes; ``None`` for an epoch too large to write whole.
        ``stream`` may be a matrix (an epoch of batches): then ``[first:stop]`` are its
        rows, and the text is theirs (``[..],[..]``).

        A view of the text kept, not a copy: a page's body is made of it in one copy
        (the head, the numbers and the closing joined), not two."""
        entry = self._entries.get_unlocked(key)  # on the event loop (the floor's)
        if entry is None or entry.stream() is not stream:
            if stream.size > TEXT_INDEX_VALUES:
                return None
            entry = _EpochText(stream, in_space(stream, space, population), binary)
            self._entries.put(key, entry)
        starts = entry.starts
        if starts is None:
            row = entry.row
            return entry.view[first * row : stop * row]
        if stop <= first:
            return entry.view[:0]
        return entry.view[starts[first] : starts[stop] - 1]
