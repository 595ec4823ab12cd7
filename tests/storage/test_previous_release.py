"""A database written by release 0.1.0 opens and answers as that release answered.

``tests/data/release-0.1.0`` holds the SQLite database of a 0.1.0 server and what that
server answered (``record.py`` there wrote both, over HTTP): plans of every algorithm
and weighting family, a split, label sets, a schedule, batch plans and a run with
updates. This release must serve the same plan records, weights and streams from that
database, and must give the same plan ids when the plans are created anew.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sampleplan.service.config import Settings
from sampleplan.service.main import create_app

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "release-0.1.0"
ANSWERS: dict[str, Any] = json.loads((FIXTURE / "answers.json").read_text())


def _client(database: Path) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=f"sqlite:///{database}"))
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def old_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    database = tmp_path_factory.mktemp("release-0.1.0") / "sampleplan.sqlite3"
    shutil.copyfile(FIXTURE / "sampleplan.sqlite3", database)
    yield from _client(database)


#: The coverage estimates of a plan answer: computed on each read with numpy's vectorised
#: exp and log, whose SIMD code numpy picks by the CPU's instruction sets, so that their
#: last bits differ between machines (AVX-512 and AVX2) as numpy's do. Nothing is drawn
#: from them; every other value, weights and streams among them, is compared exactly.
_ESTIMATES = frozenset(
    {"expected_coverage", "expected_distinct_samples", "mean_repeats_per_drawn_sample"}
)


def _as_recorded(answer: Any, recorded: Any, key: str | None = None) -> bool:
    """``answer == recorded``, but for the coverage estimates, which may differ by a few
    units in the last place."""
    if isinstance(recorded, dict):
        return (
            isinstance(answer, dict)
            and answer.keys() == recorded.keys()
            and all(_as_recorded(answer[k], recorded[k], k) for k in recorded)
        )
    if isinstance(recorded, list):
        return (
            isinstance(answer, list)
            and len(answer) == len(recorded)
            and all(_as_recorded(a, r, key) for a, r in zip(answer, recorded, strict=True))
        )
    if key in _ESTIMATES and type(recorded) is float and type(answer) is float:
        return abs(answer - recorded) <= 4 * math.ulp(recorded)
    return type(answer) is type(recorded) and answer == recorded


def test_coverage_estimates_alone_are_compared_within_last_bits() -> None:
    plan = ANSWERS["plans"]["class-quota"]["plan"]
    assert _as_recorded(plan, plan)
    nudged = json.loads(json.dumps(plan))
    value = nudged["epoch_coverage"]["expected_coverage"]
    nudged["epoch_coverage"]["expected_coverage"] = math.nextafter(value, 2.0)
    assert _as_recorded(nudged, plan)
    nudged["epoch_coverage"]["expected_coverage"] = value * (1 + 1e-9)
    assert not _as_recorded(nudged, plan)
    weights = json.loads(json.dumps(plan))
    weights["classes"][0]["class_weight"] = math.nextafter(
        weights["classes"][0]["class_weight"], 2.0
    )
    assert not _as_recorded(weights, plan)


@pytest.mark.parametrize("name", sorted(ANSWERS["plans"]))
def test_stored_plans_answer_as_before(old_database: TestClient, name: str) -> None:
    recorded = ANSWERS["plans"][name]
    plan_id = recorded["plan"]["id"]
    assert _as_recorded(old_database.get(f"/v1/plans/{plan_id}").json(), recorded["plan"])
    assert old_database.get(f"/v1/plans/{plan_id}/weights").json() == recorded["weights"]
    for page in recorded.get("streams", []):
        answer = old_database.get(f"/v1/plans/{plan_id}/indices", params=page["query"])
        assert answer.json() == page["answer"], page["query"]
    for page in recorded.get("batches", []):
        answer = old_database.get(f"/v1/plans/{plan_id}/batches", params=page["query"])
        assert answer.json() == page["answer"], page["query"]
    # The same request names the same, stored plan.
    again = old_database.post("/v1/plans", json=recorded["request"])
    assert again.status_code == 200
    assert again.json()["id"] == plan_id


def test_a_stored_run_answers_as_before(old_database: TestClient) -> None:
    for run_id, recorded in ANSWERS["runs"].items():
        assert old_database.get(f"/v1/runs/{run_id}").json() == recorded["run"]
        for epoch, weights in enumerate(recorded["weights"]):
            answer = old_database.get(f"/v1/runs/{run_id}/weights", params={"epoch": epoch})
            assert answer.json() == weights
        for page in recorded["streams"]:
            answer = old_database.get(f"/v1/runs/{run_id}/indices", params=page["query"])
            assert answer.json() == page["answer"], page["query"]


def test_plans_created_anew_have_the_same_ids_and_streams(tmp_path: Path) -> None:
    for client in _client(tmp_path / "new.sqlite3"):
        for name, recorded in sorted(ANSWERS["plans"].items()):
            created = client.post("/v1/plans", json=recorded["request"])
            assert created.status_code == 201, (name, created.text)
            plan = created.json()
            assert plan["id"] == recorded["plan"]["id"], name
            for page in recorded.get("streams", []):
                answer = client.get(f"/v1/plans/{plan['id']}/indices", params=page["query"])
                assert answer.json() == page["answer"], (name, page["query"])
            for page in recorded.get("batches", []):
                answer = client.get(f"/v1/plans/{plan['id']}/batches", params=page["query"])
                assert answer.json() == page["answer"], (name, page["query"])
