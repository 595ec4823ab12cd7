"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis).

Every generated request must get an answer that passes every schemathesis check (what
``schemathesis run -c all`` runs): not a 5xx, status code, content type, headers and body
as ``/openapi.json`` documents them, and a schema-valid request is not refused. Requests
are drawn both valid (positive) and invalid (negative: those must be refused).
Generation is bounded (``MAX_EXAMPLES`` per operation) to keep CI short.

NOTE [Rules a schema cannot state]
    Some rules relate fields, or the body to the stored data: ``rank < world_size``, a
    raw int32/int64 body whose length is a multiple of 4/8, a CSV or JSON Lines manifest's
    content, a split's fractions adding up to 1, ``class_weights`` naming the dataset's
    classes, ``weights`` one per sample, ``beta`` only for ``effective_number``... The
    operations that have them document them under their 422; ``SCHEMA_CANNOT_STATE`` lets
    the positive-data check accept that documented 422 (and the deployment's documented
    413 caps) there, and nowhere else.

schemathesis' pytest plugin (``from_fixture``) relies on pytest internals that pytest 9
removed, so the cases are drawn here with plain hypothesis from each operation's strategy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from sampleplan.service.api.uploads import OTHER_CONTENT
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app

#: Per operation. SAMPLEPLAN_FUZZ_EXAMPLES=1000 digs deeper locally.
MAX_EXAMPLES = int(os.environ.get("SAMPLEPLAN_FUZZ_EXAMPLES", "40"))


#: Operations with rules no JSON Schema states (NOTE above): a schema-valid request may
#: still get their documented 422 (or 413, over this deployment's caps).
SCHEMA_CANNOT_STATE = {
    "/v1/datasets": ["2xx", "404", "413", "422"],
    "/v1/plans": ["2xx", "404", "413", "422"],
    "/v1/sample": ["2xx", "413", "422"],
    "/v1/plans/{plan_id}/indices": ["2xx", "404", "422"],
    "/v1/plans/{plan_id}/indices/summary": ["2xx", "404", "422"],
    "/v1/plans/{plan_id}/weights": ["2xx", "404", "422"],
    "/v1/datasets/{dataset_id}/codes": ["2xx", "404", "422"],
    # Not a batch plan (the plan's config decides), and rank < world_size.
    "/v1/plans/{plan_id}/batches": ["2xx", "404", "422"],
    "/v1/plans/{plan_id}/batches/summary": ["2xx", "404", "422"],
    # The run and its plan must exist; a run id names one plan (409 for another); a plan
    # with a schedule cannot back a run; an update's indices lie in the population, its
    # epoch's successor must not be frozen (409), the weights it leaves must be drawable.
    "/v1/runs/{run_id}": ["2xx", "404", "409", "422"],
    "/v1/runs/{run_id}/updates": ["2xx", "404", "409", "422"],
    "/v1/runs/{run_id}/weights": ["2xx", "404", "422"],
    "/v1/runs/{run_id}/indices": ["2xx", "404", "422"],
}


#: How a request with invalid data may be refused: schemathesis' own list, and a 413 (an
#: invalid body can be larger than this deployment takes, such as a list of sources over
#: its ``maxItems``: refused by its size before it is read).
NEGATIVE_REFUSALS = [
    *("400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"),
    "5xx",
]


def _config() -> SchemathesisConfig:
    refusals = (
        f"[checks.negative_data_rejection]\nexpected-statuses = {json.dumps(NEGATIVE_REFUSALS)}\n"
    )
    sections = "".join(
        f"[[operations]]\ninclude-path = {json.dumps(path)}\n"
        f"checks.positive_data_acceptance.expected-statuses = {json.dumps(statuses)}\n"
        for path, statuses in SCHEMA_CANNOT_STATE.items()
    )
    return SchemathesisConfig.from_str(refusals + sections)


@schemathesis.serializer("application/x-ndjson")
def _json_lines(ctx: Any, value: Any) -> bytes:
    """The NDJSON body's schema is the array of its lines' objects: one JSON text per line."""
    items = value if isinstance(value, list) else [value]
    return "".join(json.dumps(item) + "\n" for item in items).encode()


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
        document = with_other_content(client.get("/openapi.json").json())
        schema = schemathesis.openapi.from_dict(document, config=_config())
        schema.app, schema.location = app, "/openapi.json"  # as from_asgi() sets them
        yield schema, {"dataset_id": dataset, "plan_id": plan}


def with_other_content(document: dict[str, Any]) -> dict[str, Any]:
    """The document with every request body's ``x-other-content`` in its ``content``:
    the media types generators cannot send are fuzzed too (NOTE [Bodies generators can
    send] in sampleplan.service.api.uploads)."""
    for item in document["paths"].values():
        for operation in item.values():
            body = operation.get("requestBody", {})
            body.setdefault("content", {}).update(body.pop(OTHER_CONTENT, {}))
    return document


@pytest.mark.parametrize(("method", "path"), _operations())
def test_every_answer_matches_the_schema(
    served: tuple[Any, dict[str, str]], method: str, path: str
) -> None:
    schema, known = served
    operation = schema[path][method]

    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @given(case=cases, aim_at_known=st.booleans())
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
        case.call_and_validate()

    check()
