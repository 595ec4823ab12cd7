"""Fixtures of the API tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from sampleplan.service.config import Settings
from sampleplan.service.main import create_app


@pytest.fixture(scope="module")
def module_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app (and its own SQLite file) shared by the tests of a module."""
    db = tmp_path_factory.mktemp("db") / "module.sqlite3"
    with TestClient(create_app(Settings(database_url=f"sqlite:///{db}"))) as client:
        yield client
