"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis).

Every generated request, valid or not, must get an answer that is not a 5xx and that
matches what ``/openapi.json`` documents for it: status code, content type, headers and
body schema. Generation is bounded (``MAX_EXAMPLES`` per operation) to keep CI short.

schemathesis' pytest plugin (``from_fixture``) relies on pytest internals that pytest 9
removed, so the cases are drawn here with plain hypothesis from each operation's strategy.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance

from service.config import Settings
from service.main import create_app

#: Per operation. SAMPLEPLAN_FUZZ_EXAMPLES=1000 digs deeper locally.
MAX_EXAMPLES = int(os.environ.get("SAMPLEPLAN_FUZZ_EXAMPLES", "40"))


def _settings(db: Path) -> Settings:
    # Small caps, so that generated sizes reach them and their 4xx answers are checked too.
    return Settings(
        database_url=f"sqlite:///{db}",
        max_labels=5_000,
        max_page=20_000,
        max_num_samples=20_000,
        max_body_bytes=64 * 1024,
    )


def _operations() -> list[tuple[str, str]]:
    # An app that is never started: building it opens nothing, and its schema is the same.
    paths: dict[str, dict[str, Any]] = create_app(_settings(Path("unused.sqlite3"))).openapi()[
        "paths"
    ]
    return sorted((method.upper(), path) for path, methods in paths.items() for method in methods)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    """The loaded schema, and ids of a real dataset and plan to aim path parameters at."""
    db = tmp_path_factory.mktemp("fuzz") / "fuzz.sqlite3"
    app = create_app(_settings(db))
    with TestClient(app) as client:
        labels = [0] * 30 + [1] * 9 + [2] * 3
        dataset = client.post("/v1/datasets", json={"labels": labels}).json()["id"]
        plan = client.post("/v1/plans", json={"dataset_id": dataset, "seed": 3}).json()["id"]
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        yield schema, {"dataset_id": dataset, "plan_id": plan}


@pytest.mark.parametrize(("method", "path"), _operations())
def test_every_answer_matches_the_schema(
    served: tuple[Any, dict[str, str]], method: str, path: str
) -> None:
    schema, known = served
    operation = schema[path][method]

    @given(case=operation.as_strategy(), aim_at_known=st.booleans())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case, aim_at_known: bool) -> None:
        # Random ids only ever reach the 404 branch; half the cases use ids that exist.
        if aim_at_known and case.path_parameters:
            case.path_parameters = {
                **case.path_parameters,
                **{k: v for k, v in known.items() if k in case.path_parameters},
            }
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    check()
