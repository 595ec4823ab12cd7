"""A plan names the definitions it draws (NOTE [Choosing a definition]) over HTTP.

Absent, a request keeps the first definitions, so release 0.1.0's requests name the same
plans (tests/storage/test_previous_release.py); asked for by name, the newer ones are in
the canonical config (a new id), in ``versions``, and in what is served.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sampleplan.core.batches import BatchTable, batching_from_json
from sampleplan.core.config import LATEST_DEFINITIONS
from sampleplan.core.labels import labels_from_list
from sampleplan.core.splitting import Split
from sampleplan.core.stratify import stratified_parts
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app

LABELS = ["cat"] * 40 + ["dog"] * 13 + ["emu"] * 7 + ["fox"] * 22 + ["gnu"] * 3
M_PER_CLASS = {"kind": "m_per_class", "m": 4, "batch_size": 8}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("db") / "definitions.sqlite3"
    with TestClient(create_app(Settings(database_url=f"sqlite:///{db}"))) as client:
        yield client


def _post(api: TestClient, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = api.post("/v1/plans", json={"labels": LABELS, **body})
    assert response.status_code == status, response.text
    out: dict[str, Any] = response.json()
    return out


def test_the_newest_definitions_are_recorded_and_drawn(api: TestClient) -> None:
    body = {
        "batching": M_PER_CLASS,
        "split": {"fractions": [0.8, 0.2], "seed": 1, "stratify": True},
    }
    old = _post(api, body)
    new = _post(api, {**body, "definitions": dict(LATEST_DEFINITIONS)})
    assert new["id"] != old["id"]
    assert old["versions"]["batches"] == "batches-v1"
    assert old["versions"]["stratify"] == "stratified-v1"
    assert "definitions" not in old["config"]
    assert new["versions"]["batches"] == "batches-v2"
    assert new["versions"]["stratify"] == "stratified-v2"
    assert "weights" not in new["versions"]  # inverse_frequency: the same in both
    assert new["config"]["definitions"] == {"batches": "batches-v2", "stratify": "stratified-v2"}
    # The same request again names the same plan.
    assert _post(api, {**body, "definitions": dict(LATEST_DEFINITIONS)}, 200)["id"] == new["id"]
    # What is served is the named definitions' batches over their population.
    labels = labels_from_list(LABELS)
    split = Split(seed=1, fractions=(0.8, 0.2), stratify=True)
    population = stratified_parts(split, labels, version="stratified-v2")[0]
    spec = batching_from_json(M_PER_CLASS)
    assert spec is not None
    table = BatchTable.build(labels.codes[population], labels.classes, spec, None, "batches-v2")
    page = api.get(f"/v1/plans/{new['id']}/batches", params={"epoch": 2}).json()
    assert page["batches"] == table.draw(0, 2, np.arange(table.num_batches)).tolist()


def test_a_definition_a_plan_has_no_use_for_changes_nothing(api: TestClient) -> None:
    plain = _post(api, {"seed": 4})
    again = _post(api, {"seed": 4, "definitions": dict(LATEST_DEFINITIONS)}, 200)
    assert again["id"] == plain["id"]
    assert again["versions"] == plain["versions"]
    effective = _post(
        api, {"strategy": "effective_number", "definitions": {"weights": "weights-v2"}}
    )
    assert effective["versions"]["weights"] == "weights-v2"
    assert effective["config"]["definitions"] == {"weights": "weights-v2"}
    first = _post(api, {"strategy": "effective_number", "definitions": {"weights": "weights-v1"}})
    assert "definitions" not in first["config"] and "weights" not in first["versions"]


@pytest.mark.parametrize(
    ("definitions", "message"),
    [
        ({"batchez": "batches-v2"}, "unknown definition 'batchez'"),
        ({"batches": "batches-v9"}, "definitions.batches should be one of batches-v1, batches-v2"),
        ({"weights": 2}, "definitions"),
        ("batches-v2", "definitions"),
    ],
)
def test_bad_definitions_are_refused(api: TestClient, definitions: Any, message: str) -> None:
    response = api.post(
        "/v1/plans", json={"labels": LABELS, "batching": M_PER_CLASS, "definitions": definitions}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert message in response.text
