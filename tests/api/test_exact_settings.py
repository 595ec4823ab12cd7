"""The exact draw's parallelism comes from the settings, applied when the app starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import ValidationError

from sampleplan.core import exact
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app


def test_exact_parallelism_is_set_at_start_up(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, exact_threads=3, exact_parallel_min_draws=1000)
    try:
        with TestClient(create_app(settings)) as client:
            assert (exact._parallelism.threads, exact._parallelism.min_draws) == (3, 1000)
            plan = client.post(
                "/v1/plans", json={"labels": [0, 0, 0, 1] * 500, "num_samples": 5000, "seed": 3}
            ).json()
            got = client.get(f"/v1/plans/{plan['id']}/indices").json()["indices"]
    finally:
        exact.configure_parallelism()
    weights = torch.tensor([1 / 1500] * 3 + [1 / 500], dtype=torch.float64).repeat(500)
    expected = torch.multinomial(weights, 5000, True, generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(got, expected.numpy())


@pytest.mark.parametrize(
    "field", [{"exact_threads": 0}, {"exact_threads": 65}, {"exact_parallel_min_draws": 1}]
)
def test_bad_parallelism_settings_are_rejected(field: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        Settings(**field)  # type: ignore[arg-type]
