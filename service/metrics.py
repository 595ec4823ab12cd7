"""The service's Prometheus metrics, one registry per app.

Each :func:`~sampleplan.service.main.create_app` call builds its own :class:`ServiceMetrics` (and
its own ``CollectorRegistry``), so apps made side by side in one process, as the tests
make them, never clash over prometheus_client's global registry.

With ``sampleplan serve --workers N`` each worker process counts for itself and a scrape
reaches one of them: run one worker per replica (container) and scrape every replica.
"""

from __future__ import annotations

import platform

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
)

from sampleplan import __version__

#: The classic text exposition format, which every Prometheus server reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Requests range from sub-millisecond cached pages to seconds-long cold epochs.
_LATENCY_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


class ServiceMetrics:
    """Every metric the service exports; docs/operations/metrics-and-logs.md lists them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "sampleplan_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "sampleplan_http_request_duration_seconds",
            "Time from a request's arrival to its response's last byte, by method and route.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests_in_flight = Gauge(
            "sampleplan_http_requests_in_flight",
            "Requests being handled right now.",
            registry=self.registry,
        )
        self.datasets_created = Counter(
            "sampleplan_datasets_created",
            "Datasets this replica stored (uploaded, or inline labels of a new plan).",
            registry=self.registry,
        )
        self.plans_created = Counter(
            "sampleplan_plans_created",
            "Plans this replica stored (201 answers to POST /v1/plans).",
            registry=self.registry,
        )
        self.indices_served = Counter(
            "sampleplan_indices_served",
            "Stream indices returned, by algorithm.",
            ["algorithm"],
            registry=self.registry,
        )
        self.draw_seconds = Histogram(
            "sampleplan_draw_duration_seconds",
            "Time to compute one requested page of a stream (drawing its epoch if needed).",
            ["algorithm"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.epoch_draws = Counter(
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
