"""Fixtures for the client's tests: a client of the module's live server, a private plan cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sampleplan.client import SamplePlanClient
from tests.helpers.servers import LiveServer


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test caches plans in its own directory, never in the user's."""
    cache = tmp_path / "plan-cache"
    monkeypatch.setenv("SAMPLEPLAN_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def client(module_server: LiveServer) -> Iterator[SamplePlanClient]:
    """A client of the module's live server that gives up fast (tests stop services on purpose)."""
    with SamplePlanClient(module_server.url, retries=1, backoff=0.0, timeout=10.0) as api:
        yield api
