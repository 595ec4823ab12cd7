"""The service's Prometheus metrics, one registry per app.

Each :func:`~sampleplan.service.main.create_app` call builds its own :class:`ServiceMetrics` (and
its own ``CollectorRegistry``), so apps made side by side in one process, as the tests
make them, never clash over prometheus_client's global registry.

With ``sampleplan serve --workers N`` each worker process counts for itself and a scrape
reaches one of them: run one worker per replica (container) and scrape every replica.

NOTE [Counting per thread]
    A cached page updates about eight values (requests in flight up and down, the
    request's count, its time's sum and bucket, the draw's sum and bucket, the indices
    served). prometheus_client takes a lock for each and checks its arguments on the way
    (``_raise_if_not_observable``, the bucket found by a loop in Python): a tenth of a
    page at the floor. The metrics here are prometheus_client's own classes, so that the
    registry writes the same exposition (names, types, HELP, labels, buckets, order,
    ``_created``), with one change: each child keeps its values in a :class:`_Tally`, a
    row of floats per thread that updates it, in place of a locked value each. A thread
    adds to its own row only, so ``row[i] += x`` never races another thread's update and
    needs no lock (two threads never write one list); a scrape adds the rows up (the
    list of rows is copied in one step under the GIL, while a thread may be adding its
    first row). An update is then a dict lookup and a ``+=``: ``inc``, ``dec`` and
    ``observe`` take that path, and so does anything calling the children's values as
    prometheus_client does (``labels(...).inc()``, ``reset()``). ``set`` is exact when
    no other thread moves the same value at that moment (``sampleplan_build_info`` is
    set once; the counters are never set).

    prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) swaps its value
    class for one kept in shared files; then these classes keep that value class, and
    count as prometheus_client does.
"""

from __future__ import annotations

import platform
from bisect import bisect_left
from collections.abc import Sequence
from threading import get_ident
from typing import Any

import numpy as np
import torch
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    values,
)

from sampleplan import __version__

#: The classic text exposition format, which every Prometheus server reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Requests range from sub-millisecond cached pages to seconds-long cold epochs.
_LATENCY_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


class _Tally:
    """``width`` floats counted per thread (NOTE [Counting per thread])."""

    __slots__ = ("rows", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        #: Each updating thread's row, by thread id. A thread id reused after its thread
        #: ended takes the row over: one writer at a time still.
        self.rows: dict[int, list[float]] = {}

    def row(self) -> list[float]:
        """The calling thread's row."""
        row = self.rows.get(get_ident())
        if row is None:
            row = self.rows[get_ident()] = [0.0] * self.width
        return row

    def total(self, index: int) -> float:
        rows = list(self.rows.values())  # one step under the GIL
        if len(rows) == 1:
            return rows[0][index]
        total = 0.0
        for row in rows:
            total += row[index]
        return total


class _Value:
    """One float of a :class:`_Tally`, with prometheus_client's value interface."""

    __slots__ = ("_exemplar", "index", "tally")

    def __init__(self, tally: _Tally, index: int) -> None:
        self.tally = tally
        self.index = index
        self._exemplar: Any = None

    def inc(self, amount: float) -> None:
        self.tally.row()[self.index] += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self.tally.row()[self.index] += value - self.get()

    def get(self) -> float:
        return self.tally.total(self.index)

    def set_exemplar(self, exemplar: Any) -> None:
        self._exemplar = exemplar

    def get_exemplar(self) -> Any:
        return self._exemplar


def _fast() -> bool:
    """Whether prometheus_client keeps values in memory (not its multiprocess mode)."""
    return values.ValueClass is values.MutexValue


def thread_row(child: Counter | Gauge | Histogram) -> list[float] | None:
    """The calling thread's row of ``child``'s values (a labelled metric's child, or a
    metric without labels), or ``None`` when it does not count per thread (multiprocess
    mode, or prometheus_client's own classes). A counter's or gauge's row holds its
    value; a histogram's, its sum then each bucket's own count, in the order of its
    ``_upper_bounds``. The row is the thread's for as long as the thread lives: a caller
    may keep it, and add to it from that thread only (NOTE [Counting per thread])."""
    tally: _Tally | None = None
    if isinstance(child, FastHistogram):
        tally = child._tally
    elif isinstance(child, FastCounter | FastGauge):
        value = getattr(child, "_value", None)  # a labelled parent has none
        tally = value.tally if isinstance(value, _Value) else None
    return None if tally is None else tally.row()


class FastCounter(Counter):
    """A :class:`Counter` counting per thread (NOTE [Counting per thread])."""

    #: The tally's rows; ``None`` in a labelled parent, and in multiprocess mode.
    _rows: dict[int, list[float]] | None = None

    def _metric_init(self) -> None:
        super()._metric_init()
        if _fast():
            self._value = _Value(_Tally(1), 0)
            self._rows = self._value.tally.rows

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        rows = self._rows
        if rows is None or exemplar or amount < 0:
            super().inc(amount, exemplar)  # the checks, and what they refuse
            return
        row = rows.get(get_ident())
        if row is None:
            row = self._value.tally.row()
        row[0] += amount


class FastGauge(Gauge):
    """A :class:`Gauge` counting per thread (NOTE [Counting per thread])."""

    _rows: dict[int, list[float]] | None = None

    def _metric_init(self) -> None:
        super()._metric_init()
        if _fast() and self._multiprocess_mode not in self._MOST_RECENT_MODES:
            self._value = _Value(_Tally(1), 0)
            self._rows = self._value.tally.rows

    def inc(self, amount: float = 1) -> None:
        rows = self._rows
        if rows is None:
            super().inc(amount)
            return
        row = rows.get(get_ident())
        if row is None:
            row = self._value.tally.row()
        row[0] += amount

    def dec(self, amount: float = 1) -> None:
        self.inc(-amount)  # as prometheus_client's Gauge.dec: inc of the negated amount


class FastHistogram(Histogram):
    """A :class:`Histogram` counting per thread (NOTE [Counting per thread]): a row holds
    the sum, then each bucket's own count (prometheus_client's, before it adds them up)."""

    _rows: dict[int, list[float]] | None = None
    _tally: _Tally | None = None

    def _metric_init(self) -> None:
        super()._metric_init()
        if _fast():
            tally = _Tally(1 + len(self._upper_bounds))
            self._sum = _Value(tally, 0)
            self._buckets = [_Value(tally, 1 + i) for i in range(len(self._upper_bounds))]
            self._rows = tally.rows
            self._tally = tally

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        rows = self._rows
        if rows is None or exemplar:
            super().observe(amount, exemplar)
            return
        row = rows.get(get_ident())
        if row is None:
            assert self._tally is not None  # set with the rows
            row = self._tally.row()
        observe_in_row(row, self._upper_bounds, amount)


def observe_in_row(row: list[float], bounds: Sequence[float], amount: float) -> None:
    """Observe ``amount`` in a histogram's row (:func:`thread_row`) whose buckets have
    ``bounds``: its sum, and the bucket prometheus_client's loop finds, the first bound
    at or above ``amount`` (the last bound is +Inf; NaN is in none, and only in the sum)."""
    row[0] += amount
    index = bisect_left(bounds, amount)
    if amount <= bounds[index]:
        row[1 + index] += 1


class ServiceMetrics:
    """Every metric the service exports; docs/operations/metrics-and-logs.md lists them."""

    def __init__(self, *, per_thread: bool = True) -> None:
        """``per_thread=False``: prometheus_client's own classes, counting as they count
        (the tests' reference for NOTE [Counting per thread])."""
        counter, gauge, histogram = (
            (FastCounter, FastGauge, FastHistogram) if per_thread else (Counter, Gauge, Histogram)
        )
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = counter(
            "sampleplan_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = histogram(
            "sampleplan_http_request_duration_seconds",
            "Time from a request's arrival to its response's last byte, by method and route.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests_in_flight = gauge(
            "sampleplan_http_requests_in_flight",
            "Requests being handled right now.",
            registry=self.registry,
        )
        self.datasets_created = counter(
            "sampleplan_datasets_created",
            "Datasets this replica stored (uploaded, or inline labels of a new plan).",
            registry=self.registry,
        )
        self.plans_created = counter(
            "sampleplan_plans_created",
            "Plans this replica stored (201 answers to POST /v1/plans).",
            registry=self.registry,
        )
        self.indices_served = counter(
            "sampleplan_indices_served",
            "Stream indices returned, by algorithm.",
            ["algorithm"],
            registry=self.registry,
        )
        self.draw_seconds = histogram(
            "sampleplan_draw_duration_seconds",
            "Time to compute one requested page of a stream (drawing its epoch if needed).",
            ["algorithm"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.epoch_draws = counter(
            "sampleplan_epoch_draws",
            "Whole epochs drawn into the epoch cache, by algorithm: one per cold epoch "
            "however many requests asked for it together (single flight), per process.",
            ["algorithm"],
            registry=self.registry,
        )
        self._stream_children: dict[str, tuple[Histogram, Counter]] = {}
        build = Gauge(
            "sampleplan_build_info",
            "Always 1; the labels say what defines this replica's streams.",
            ["version", "torch", "numpy", "machine"],
            registry=self.registry,
        )
        build.labels(__version__, torch.__version__, np.__version__, platform.machine()).set(1)

    def stream_children(self, algorithm: str) -> tuple[Histogram, Counter]:
        """``draw_seconds`` and ``indices_served`` of ``algorithm``, found by label once
        (``labels()`` checks and locks on every call; algorithms are few)."""
        children = self._stream_children.get(algorithm)
        if children is None:
            children = (self.draw_seconds.labels(algorithm), self.indices_served.labels(algorithm))
            self._stream_children[algorithm] = children
        return children

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
