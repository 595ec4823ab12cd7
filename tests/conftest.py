"""Fixtures shared by every test folder (settings, apps, a live server, databases, a private
plan cache), and the order the test files run in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers.databases import (
    POSTGRES_ADMIN_URL,
    create_database,
    drop_database,
    postgres_problem,
)
from tests.helpers.servers import LiveServer

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from sampleplan.service.config import Settings

# The service (torch with it) is imported by the fixtures that build it, not here: under
# xdist the controlling process loads this file before it starts the workers, and never
# builds an app (2.5 s of imports it did before any worker could start).

# Quiet logs: one access line per request would bury a failing test's output. Tests of
# the logs ask for their level; SAMPLEPLAN_LOG_LEVEL=info in the environment brings them back.
os.environ.setdefault("SAMPLEPLAN_LOG_LEVEL", "warning")
# No test reaches the Hugging Face Hub (the guide's models are built from configs): set
# before anything imports huggingface_hub, and inherited by the processes tests start.
for _offline in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_offline, "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files that hold a slow or a long test run first (each file's tests stay together,
    in order).

    Under xdist (`make test`: ``--dist loadfile --no-loadscope-reorder``) the workers take
    files in this order, so the long multi-process tests start at once, side by side,
    and the many short ones fill in after them rather than leaving one worker alone with
    a minute-long test at the end. A file marked long (tens of seconds in one process)
    is such a test too, though `make test-quick` keeps it.
    """
    first = {
        item.path
        for item in items
        if item.get_closest_marker("slow") or item.get_closest_marker("long")
    }
    items.sort(key=lambda item: item.path not in first)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test caches plans in its own directory: never the user's, nor another worker's."""
    cache = tmp_path / "plan-cache"
    monkeypatch.setenv("SAMPLEPLAN_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sampleplan.sqlite3'}"


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    from sampleplan.service.config import Settings

    return Settings(database_url=sqlite_url)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    from sampleplan.service.main import create_app

    return create_app(settings)


@pytest.fixture
def api(app: FastAPI) -> Iterator[TestClient]:
    """A TestClient with the lifespan running (the store is open)."""
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield client


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    from sampleplan.service.main import create_app

    with LiveServer(create_app(settings)) as server:
        yield server


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server on a SQLite database of its own, shared by a module's tests."""
    from sampleplan.service.config import Settings
    from sampleplan.service.main import create_app

    db = tmp_path_factory.mktemp("db") / "sampleplan.sqlite3"
    with LiveServer(create_app(Settings(database_url=f"sqlite:///{db}"))) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (per xdist worker), dropped afterwards.

    Skips (loudly) only when no server answers at ``SAMPLEPLAN_TEST_POSTGRES_URL``.
    """
    problem = postgres_problem()
    if problem is not None:
        pytest.skip(f"PostgreSQL NOT TESTED: no server answers at {POSTGRES_ADMIN_URL} ({problem})")
    url = create_database("sampleplan_test")
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """Each storage test runs against SQLite and against a real PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_url
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """An empty PostgreSQL database of this test's own (which the test may even drop)."""
    url = create_database("sampleplan_fresh")
    try:
        yield url
    finally:
        drop_database(url)
