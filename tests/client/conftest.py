"""Fixtures for the client's tests: one live service per module, a private plan cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from client import SamplePlanClient
from service.config import Settings
from service.main import create_app
from tests.conftest import LiveServer


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test caches plans in its own directory, never in the user's."""
    cache = tmp_path / "plan-cache"
    monkeypatch.setenv("SAMPLEPLAN_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real service, uvicorn on a loopback port, shared by a module's tests."""
    db = tmp_path_factory.mktemp("db") / "client.sqlite3"
    server = LiveServer(create_app(Settings(database_url=f"sqlite:///{db}"))).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(service: LiveServer) -> Iterator[SamplePlanClient]:
    """A client of ``service`` that gives up fast (tests stop services on purpose)."""
    with SamplePlanClient(service.url, retries=1, backoff=0.0, timeout=10.0) as api:
        yield api
