"""Fixtures for the client's tests: a client of the module's live server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sampleplan.client import SamplePlanClient
from tests.helpers.servers import LiveServer


@pytest.fixture
def client(module_server: LiveServer) -> Iterator[SamplePlanClient]:
    """A client of the module's live server that gives up fast (tests stop services on purpose)."""
    with SamplePlanClient(module_server.url, retries=1, backoff=0.0, timeout=10.0) as api:
        yield api
