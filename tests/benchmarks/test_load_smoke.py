"""The load benchmark runs end to end (with tiny numbers; no timing is asserted)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.conftest import LiveServer

LOAD_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "load.py"


def _load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sampleplan_load_benchmark", LOAD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_load_benchmark_reports_throughput_and_probe_latency(live_server: LiveServer) -> None:
    load = _load_module()
    report = asyncio.run(
        load.run(
            live_server.url,
            clients=4,
            requests=40,
            duration=10.0,
            page_size=100,
            cold_draws=200_000,
        )
    )
    assert report.requests == 40 and report.errors == 0
    assert report.cold_status == 200
    assert len(report.probes.values) >= 1
    text = report.render(4, 100, 200_000)
    for words in ["requests/s", "p50", "p99", "/healthz meanwhile"]:
        assert words in text
