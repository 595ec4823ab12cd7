"""NOTE [Counting per thread] in service/metrics.py: the metrics count per thread, without
prometheus_client's locks, and ``/metrics`` writes what prometheus_client's own classes
write of the same updates, byte for byte but for the times that are times."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest
from prometheus_client import Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families

from sampleplan.service.api.observability import RequestRecorder
from sampleplan.service.metrics import ServiceMetrics, thread_row

ROUTE = "/v1/plans/{plan_id}/indices"

# Each bucket's bound, on it, just above it, beyond the last one, zero, and a NaN (which
# prometheus_client adds to the sum and to no bucket).
ELAPSED = [
    0.0,
    0.001,
    0.0010000001,
    0.0024,
    0.0025,
    0.004,
    0.05,
    0.2500001,
    1.0,
    59.99,
    60.0,
    60.5,
    1e9,
    float("nan"),
    *(i / 997 for i in range(40)),
]


def _recorder(metrics: ServiceMetrics) -> RequestRecorder:
    return RequestRecorder(metrics, routes=lambda scope: "unmatched")  # type: ignore[arg-type]


def _updates(metrics: ServiceMetrics) -> None:
    """Every kind of update the service makes, in a fixed order."""
    recorder = _recorder(metrics)
    get = {"method": "GET", "path": "/v1/plans/p/indices", "client": ("10.0.0.1", 1)}
    post = {"method": "POST", "path": "/v1/plans", "client": None}
    for i, elapsed in enumerate(ELAPSED):
        metrics.requests_in_flight.inc()
        recorder.record(get, (200, 404, 200, 503)[i % 4], elapsed, f"id-{i}", ROUTE)
        if i % 3 == 0:
            recorder.record(post, 201, elapsed * 2, f"post-{i}")  # the route found by path
        metrics.requests_in_flight.dec()
        draw, served = metrics.stream_children(("torch", "numpy")[i % 2])
        draw.observe(elapsed)
        served.inc(i)
        # The mixtures' way: by label, through prometheus_client's own methods.
        metrics.draw_seconds.labels("mixture").observe(elapsed / 3)
        metrics.indices_served.labels("mixture").inc(7)
    metrics.requests_in_flight.inc(3)
    metrics.requests_in_flight.dec()
    metrics.plans_created.inc()
    metrics.datasets_created.inc(2)
    metrics.datasets_created.inc(0)
    metrics.epoch_draws.labels("torch").inc()


def _comparable(exposition: bytes) -> str:
    """The text, with the process' own samples (CPU time, memory) and the ``_created``
    times (when each child was made) taken out."""
    text = exposition.decode()
    text = re.sub(r"(?m)^process_\S+ \S+\n", "", text)
    return re.sub(r"(?m)^(\S+_created(?:\{.*\})?) \S+$", r"\1 <time>", text)


def test_the_exposition_is_the_one_prometheus_client_writes() -> None:
    began = time.time()
    ours, reference = ServiceMetrics(), ServiceMetrics(per_thread=False)
    assert type(ours.requests) is not Counter and type(reference.requests) is Counter
    for metrics in (ours, reference):
        _updates(metrics)
    ended = time.time()
    text = ours.exposition()
    assert _comparable(text) == _comparable(reference.exposition())
    assert b'le="+Inf"' in text and b"sampleplan_http_requests_in_flight 2.0" in text
    created = [
        sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.name.endswith("_created")
    ]
    assert created and all(began <= value <= ended for value in created)


def _value(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


def test_counts_are_exact_when_threads_count_at_once() -> None:
    metrics = ServiceMetrics()
    recorder = _recorder(metrics)
    scope = {"method": "GET", "path": "/v1/plans/p/indices", "client": None}
    threads, rounds = 6, 4000
    start = threading.Barrier(threads)

    def work(k: int) -> None:
        draw, served = metrics.stream_children("torch")
        start.wait()
        for i in range(rounds):
            metrics.requests_in_flight.inc()
            recorder.record(scope, 200, 0.002 if i % 2 else 0.02, "rid", ROUTE)
            draw.observe(0.5)
            served.inc(3)
            metrics.datasets_created.inc()
            metrics.requests_in_flight.dec()

    # Two waves: the second's threads may take the ids (and rows) of the first's.
    for _ in range(2):
        workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    total = 2 * threads * rounds
    get: dict[str, Any] = {"method": "GET", "route": ROUTE}
    assert _value(metrics, "sampleplan_http_requests_total", **get, status="200") == total
    assert _value(metrics, "sampleplan_http_request_duration_seconds_count", **get) == total
    duration = "sampleplan_http_request_duration_seconds_bucket"
    assert _value(metrics, duration, **get, le="0.001") == 0
    assert _value(metrics, duration, **get, le="0.0025") == total / 2
    assert _value(metrics, duration, **get, le="0.025") == total
    assert _value(metrics, "sampleplan_draw_duration_seconds_sum", algorithm="torch") == total / 2
    assert _value(metrics, "sampleplan_indices_served_total", algorithm="torch") == 3 * total
    assert _value(metrics, "sampleplan_datasets_created_total") == total
    assert _value(metrics, "sampleplan_http_requests_in_flight") == 0


def test_refusals_are_prometheus_clients() -> None:
    """What prometheus_client refuses, the per-thread classes refuse the same way."""
    metrics = ServiceMetrics()
    with pytest.raises(ValueError, match="non-negative"):
        metrics.plans_created.inc(-1)
    with pytest.raises(ValueError, match="label"):
        metrics.indices_served.inc()  # a labelled parent counts nothing itself
    with pytest.raises(ValueError, match="label"):
        metrics.draw_seconds.observe(1.0)
    assert isinstance(metrics.draw_seconds, Histogram)
    metrics.plans_created.reset()
    assert _value(metrics, "sampleplan_plans_created_total") == 0


def test_a_threads_row_is_what_its_updates_update() -> None:
    """The floor adds to the rows :func:`thread_row` gives, as the classes' own methods do:
    a counter's value, a histogram's sum then each bucket's own count."""
    ours, reference = ServiceMetrics(), ServiceMetrics(per_thread=False)
    served = thread_row(ours.indices_served.labels("torch"))
    seconds = thread_row(ours.request_seconds.labels("GET", ROUTE))
    assert served is not None and seconds is not None
    histogram = ours.request_seconds.labels("GET", ROUTE)
    assert len(seconds) == 1 + len(histogram._upper_bounds)
    served[0] += 7
    seconds[0] += 0.003
    seconds[1 + 2] += 1  # 0.003 is in the bucket of 0.005, the third
    reference.indices_served.labels("torch").inc(7)
    reference.request_seconds.labels("GET", ROUTE).observe(0.003)
    assert _comparable(ours.exposition()) == _comparable(reference.exposition())
    # The row is the thread's: another thread gets its own.
    others: list[Any] = []
    thread = threading.Thread(target=lambda: others.append(thread_row(histogram)))
    thread.start()
    thread.join()
    assert others[0] is not seconds and others[0] == [0.0] * len(seconds)


def test_no_row_where_values_are_not_counted_per_thread() -> None:
    reference = ServiceMetrics(per_thread=False)
    assert thread_row(reference.requests_in_flight) is None
    assert thread_row(reference.indices_served.labels("torch")) is None
    assert thread_row(ServiceMetrics().indices_served) is None  # a labelled parent


def test_multiprocess_mode_keeps_prometheus_clients_values(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With prometheus_client's multiprocess value class, values live in its files."""
    from prometheus_client import values

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    metrics = ServiceMetrics()
    _updates(metrics)
    assert type(metrics.plans_created._value) is values.ValueClass
    assert list(tmp_path.iterdir())  # written where prometheus_client writes them
    served = _value(metrics, "sampleplan_indices_served_total", algorithm="mixture")
    assert served == 7 * len(ELAPSED)
    assert _value(metrics, "sampleplan_http_requests_in_flight") == 2
    values.close_all_multiprocess_files()
