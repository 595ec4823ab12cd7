"""LRUCache: bounded by entries or by size, least recently used evicted, thread-safe."""

from __future__ import annotations

import threading

import pytest

from sampleplan.core.lru import LRUCache


def test_entries_beyond_the_bound_evict_the_least_recently_used() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now more recent than b
    cache.put("c", 3)
    assert "b" not in cache and cache.peek("a") == 1 and cache.peek("c") == 3
    assert len(cache) == 2 and cache.evictions == 1


def test_peek_and_contains_do_not_refresh() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.peek("a") == 1 and "a" in cache
    cache.put("c", 3)
    assert "a" not in cache and cache.get("b") == 2


def test_a_put_refreshes_and_replaces() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    cache.put("c", 3)
    assert cache.peek("a") == 10 and "b" not in cache


def test_a_size_budget() -> None:
    cache: LRUCache[str, bytes] = LRUCache(10, size=len)
    assert cache.put("a", b"12345")
    assert cache.put("b", b"1234")
    assert cache.total == 9
    assert cache.put("c", b"12")  # 11 > 10: a goes
    assert "a" not in cache and cache.total == 6 and cache.evictions == 1
    # Larger than the whole budget: not kept, and nothing evicted for it.
    assert not cache.put("big", b"x" * 11)
    assert "big" not in cache and cache.total == 6 and len(cache) == 2


def test_a_bound_of_zero_keeps_nothing() -> None:
    cache: LRUCache[str, int] = LRUCache(0)
    assert not cache.put("a", 1)
    assert cache.get("a") is None and len(cache) == 0


def test_pop_and_clear() -> None:
    cache: LRUCache[str, bytes] = LRUCache(10, size=len)
    cache.put("a", b"123")
    cache.put("b", b"4")
    assert cache.pop("a") == b"123" and cache.pop("a") is None and cache.total == 1
    cache.clear()
    assert len(cache) == 0 and cache.total == 0 and cache.evictions == 0


def test_get_or_build_builds_once_per_miss() -> None:
    cache: LRUCache[int, str] = LRUCache(1)
    built: list[int] = []

    def build(n: int) -> str:
        built.append(n)
        return str(n)

    assert cache.get_or_build(1, lambda: build(1)) == "1"
    assert cache.get_or_build(1, lambda: build(1)) == "1"
    assert cache.get_or_build(2, lambda: build(2)) == "2"
    assert cache.get_or_build(1, lambda: build(1)) == "1"
    assert built == [1, 2, 1]


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_size should be a non-negative integer"):
        LRUCache(-1)


def test_concurrent_puts_keep_the_bound() -> None:
    cache: LRUCache[int, bytes] = LRUCache(100, size=len)

    def fill(start: int) -> None:
        for i in range(start, start + 500):
            cache.put(i, b"x" * (i % 7 + 1))
            cache.get(i - 3)

    threads = [threading.Thread(target=fill, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.total <= 100
    assert cache.total == sum(len(cache.peek(k) or b"") for k in range(4000) if k in cache)


def test_get_unlocked_refreshes_as_get_does() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get_unlocked("a") == 1 and cache.get_unlocked("z") is None
    cache.put("c", 3)
    assert "b" not in cache and cache.peek("a") == 1 and cache.total == 2


def test_get_unlocked_beside_threads_that_put_and_evict() -> None:
    # Its two steps are each one call into the ordered dict: whatever other threads put
    # and evict meanwhile, it answers a value once put for the key, and the cache's
    # entries and total stay consistent.
    cache: LRUCache[int, int] = LRUCache(64)
    stop = threading.Event()
    seen: list[int | None] = []

    def churn(offset: int) -> None:
        i = 0
        while not stop.is_set():
            cache.put((i + offset) % 200, (i + offset) % 200)
            i += 1

    workers = [threading.Thread(target=churn, args=(k * 7,)) for k in range(3)]
    for worker in workers:
        worker.start()
    try:
        for i in range(100_000):
            value = cache.get_unlocked(i % 200)
            assert value is None or value == i % 200
            seen.append(value)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert any(value is not None for value in seen)
    assert len(cache) == cache.total <= 64
