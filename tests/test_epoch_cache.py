"""EpochCache on its own: single flight, failures, byte budget; and EpochTexts."""

from __future__ import annotations

import threading
import time

import numpy as np
import orjson
import pytest

from sampleplan.core.deadlines import check_deadline, deadline
from sampleplan.core.errors import DeadlineExceeded
from sampleplan.service.epoch_cache import TEXT_INDEX_VALUES, EpochCache, EpochTexts


def test_a_failed_draw_reaches_every_waiter_and_is_not_cached() -> None:
    cache = EpochCache(1 << 20)
    started = threading.Event()
    release = threading.Event()
    calls: list[int] = []

    def failing() -> np.ndarray:
        calls.append(1)
        started.set()
        release.wait(5)
        raise ValueError("boom")

    errors: list[str] = []

    def waiter() -> None:
        try:
            cache.get_or_draw("k", lambda: np.arange(3))
        except ValueError as exc:
            errors.append(str(exc))

    first = threading.Thread(target=waiter)

    def drawing() -> None:
        with pytest.raises(ValueError):
            cache.get_or_draw("k", failing)

    drawer = threading.Thread(target=drawing)
    drawer.start()
    started.wait(5)
    first.start()
    while cache.stats().misses < 2:  # the waiter found the draw in flight
        threading.Event().wait(0.001)
    release.set()
    drawer.join()
    first.join()
    assert errors == ["boom"] and calls == [1]
    assert cache.get("k") is None
    assert cache.get_or_draw("k", lambda: np.arange(3)).tolist() == [0, 1, 2]  # tried again
    assert cache.stats().draws == 2


def test_an_epoch_larger_than_the_budget_is_served_but_not_kept() -> None:
    cache = EpochCache(100)
    stream = cache.get_or_draw("big", lambda: np.arange(50, dtype=np.int64))
    assert stream.shape == (50,) and cache.get("big") is None
    assert cache.stats().bytes == 0


def test_first_touch() -> None:
    cache = EpochCache(1 << 20)
    assert cache.first_touch("a") is True
    assert cache.first_touch("a") is False
    cache.get_or_draw("b", lambda: np.arange(2))
    assert cache.first_touch("b") is False


def test_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes should be a non-negative integer"):
        EpochCache(-1)


def test_a_draw_the_budget_cannot_keep_is_held_while_requests_for_it_are_in_flight() -> None:
    cache = EpochCache(max_bytes=0)
    draws: list[int] = []

    def draw() -> np.ndarray:
        draws.append(1)
        return np.arange(10, dtype=np.int64)

    with cache.in_flight("epoch"), cache.in_flight("epoch"):
        first = cache.get_or_draw("epoch", draw)
        # A request that came for the same epoch while it was drawn, served after it.
        assert "epoch" in cache
        assert cache.get_or_draw("epoch", draw) is first
        assert cache.get("epoch") is first
        assert not cache.first_touch("epoch")
        assert len(draws) == 1
        assert cache.stats().bytes == 0  # held outside the budget
    # Nobody asks any more: it is gone, and the next request draws again.
    assert "epoch" not in cache
    cache.get_or_draw("epoch", draw)
    assert len(draws) == 2


def test_nothing_is_held_for_a_key_without_requests_in_flight() -> None:
    cache = EpochCache(max_bytes=0)
    with cache.in_flight("other"):
        cache.get_or_draw("epoch", lambda: np.arange(3, dtype=np.int64))
        assert "epoch" not in cache


def _chunked_draw(seconds: float, chunks: list[int]) -> np.ndarray:
    """A draw of ``seconds`` that checks the deadline between chunks, as the core's do."""
    for chunk in range(round(seconds * 100)):
        check_deadline()
        chunks.append(chunk)
        time.sleep(0.01)
    return np.arange(10)


def test_a_draw_goes_on_for_a_waiter_when_its_starter_times_out() -> None:
    """NOTE [Single flight]: the request that started a draw times out, another still waits
    for it: the draw ends, once, and the waiter gets the epoch."""
    cache = EpochCache(1 << 20)
    chunks: list[int] = []
    started = threading.Event()
    got: list[np.ndarray] = []

    def draw() -> np.ndarray:
        started.set()
        return _chunked_draw(0.6, chunks)

    def starter() -> None:
        with deadline(0.1):
            got.append(cache.get_or_draw("k", draw))

    def waiter() -> None:
        started.wait(5)
        with deadline(30.0):
            got.append(cache.get_or_draw("k", lambda: np.arange(99)))

    threads = [threading.Thread(target=starter), threading.Thread(target=waiter)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [g.tolist() for g in got] == [list(range(10))] * 2
    assert len(chunks) == 60 and cache.stats().draws == 1


def test_a_draw_no_one_waits_for_stops_at_the_deadline() -> None:
    cache = EpochCache(1 << 20)
    chunks: list[int] = []
    began = time.monotonic()
    with deadline(0.1), pytest.raises(DeadlineExceeded):
        cache.get_or_draw("k", lambda: _chunked_draw(5.0, chunks))
    assert time.monotonic() - began < 3.0 and len(chunks) < 300
    # Nothing was cached: the next request draws.
    assert cache.get_or_draw("k", lambda: np.arange(4)).tolist() == [0, 1, 2, 3]


def test_a_waiter_stops_waiting_at_its_own_deadline() -> None:
    cache = EpochCache(1 << 20)
    chunks: list[int] = []
    started = threading.Event()
    got: list[np.ndarray] = []

    def draw() -> np.ndarray:
        started.set()
        return _chunked_draw(0.8, chunks)

    starter = threading.Thread(target=lambda: got.append(cache.get_or_draw("k", draw)))
    starter.start()
    started.wait(5)
    with deadline(0.1), pytest.raises(DeadlineExceeded):
        cache.get_or_draw("k", lambda: np.arange(99))
    assert len(chunks) < 80  # it stopped waiting before the draw ended
    starter.join(10)
    # The starter has no deadline: its draw ran to its end.
    assert got[0].tolist() == list(range(10)) and len(chunks) == 80


@pytest.mark.parametrize("space", ["population", "dataset"])
def test_epoch_texts_are_the_pages_numbers_json_and_binary(space: str) -> None:
    # NOTE [Numbers written once]: a slice of the epoch's text or bytes is what writing
    # the page alone gives (orjson's numbers; little-endian int64).
    rng = np.random.default_rng(5)
    stream = rng.integers(0, 1_000, size=3_000).astype(np.int64)
    population = np.arange(5_000, 8_000, dtype=np.int64)[::-1].copy()
    texts = EpochTexts(1 << 20)
    mapped = population[stream] if space == "dataset" else stream
    for first, stop in [(0, 3_000), (10, 20), (2_999, 3_000), (7, 7), (100, 50)]:
        text = texts.numbers(("k", space, False), stream, space, population, first, stop)
        page = mapped[first:stop]
        assert text == (orjson.dumps(page.tolist())[1:-1] if stop > first else b"")
        wire = texts.numbers(("k", space, True), stream, space, population, first, stop, True)
        assert wire == page.astype("<i8").tobytes()
    # The same key for a stream drawn anew is written anew.
    again = stream[::-1].copy()
    wire = texts.numbers(("k", space, True), again, space, population, 0, 5, True)
    assert wire == (population[again] if space == "dataset" else again)[:5].astype("<i8").tobytes()


def test_epoch_texts_leave_an_epoch_too_large_to_write() -> None:
    stream = np.zeros(TEXT_INDEX_VALUES + 1, dtype=np.int64)
    texts = EpochTexts(1 << 30)
    assert texts.numbers("big", stream, "population", None, 0, 5) is None
    assert texts.numbers("big-b", stream, "population", None, 0, 5, True) is None
