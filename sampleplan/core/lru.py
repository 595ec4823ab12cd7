"""A bounded map that forgets its least recently used entries: the one cache behind the
service's in-memory caches (prepared plans, recent labels, epoch streams, a run's frozen
and pending epochs) and the prepared epochs of a scheduled plan.

Plain Python (no numpy), so the core, the service and the client can all use it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["LRUCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _one(_: object) -> int:
    return 1


class LRUCache(Generic[K, V]):
    """At most ``max_size`` of entries, least recently used evicted first; thread-safe.

    The size of an entry is ``size(value)``: 1 by default, so that ``max_size`` counts
    entries; a number of bytes for a cache bounded by memory. A value larger than
    ``max_size`` on its own is not kept, and evicts nothing (``max_size=0`` keeps
    nothing). :meth:`get` and :meth:`put` make an entry the most recently used;
    :meth:`peek` and ``in`` do not.
    """

    def __init__(self, max_size: int, size: Callable[[V], int] = _one) -> None:
        if max_size < 0:
            raise ValueError(
                f"max_size should be a non-negative integer, but got max_size={max_size}"
            )
        self.max_size = max_size
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._total = 0
        self._evictions = 0

    def get(self, key: K) -> V | None:
        """The value for ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def get_unlocked(self, key: K) -> V | None:
        """:meth:`get` without the lock, for the event loop's hottest reads: each of its two
        steps is one call into the ordered dict's C code, which another thread cannot
        interrupt (the GIL), and which leaves the entries and their total as they are. A
        key evicted between the two is still answered, as a :meth:`get` just before."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        # try is free when nothing is raised; suppress() would be a call and a with.
        try:  # noqa: SIM105
            self._entries.move_to_end(key)
        except KeyError:
            pass  # evicted by another thread meanwhile
        return entry[0]

    def peek(self, key: K) -> V | None:
        """The value for ``key``, or ``None``, leaving the order as it is."""
        with self._lock:
            entry = self._entries.get(key)
            return None if entry is None else entry[0]

    def put(self, key: K, value: V) -> bool:
        """Keep ``value`` for ``key`` as the most recently used, evicting the least recently
        used entries until the sizes fit; ``False`` (and nothing evicted, nor any previous
        value for ``key`` kept) when ``value`` alone is larger than ``max_size``."""
        size = self._size(value)
        with self._lock:
            self._discard(key)
            if size > self.max_size:
                return False
            self._entries[key] = (value, size)
            self._total += size
            while self._total > self.max_size:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._total -= evicted
                self._evictions += 1
            return True

    def get_or_build(self, key: K, build: Callable[[], V]) -> V:
        """The value for ``key``, made by ``build()`` and kept if there is none.

        ``build`` runs outside the lock: two threads missing the same key may both build
        it, and the later one is kept; for values that are equal whoever builds them.
        """
        value = self.get(key)
        if value is None:
            value = build()
            self.put(key, value)
        return value

    def pop(self, key: K) -> V | None:
        """Forget ``key``; its value, or ``None``."""
        with self._lock:
            entry = self._discard(key)
            return None if entry is None else entry[0]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._total = 0

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def total(self) -> int:
        """The sum of the kept entries' sizes."""
        with self._lock:
            return self._total

    @property
    def evictions(self) -> int:
        """Entries evicted to make room since the cache was made (not those popped)."""
        with self._lock:
            return self._evictions

    def _discard(self, key: K) -> tuple[V, int] | None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._total -= entry[1]
        return entry
