"""Features merged in the second wave, combined: what each branch's tests saw only alone."""

from __future__ import annotations

from fastapi.testclient import TestClient

LABELS = [0, 0, 0, 0, 1, 1, 2, 0, 0, 1] * 5
STRATIFIED = {"fractions": [0.6, 0.4], "seed": 1, "stratify": True}


def test_a_stratified_plan_records_the_version_of_its_split(module_api: TestClient) -> None:
    # The offline client checks the manifest before it recomputes the population; a
    # stratified split's population is defined by NOTE [stratified-v1].
    for algorithm in ("torch", "hierarchical"):
        plan = module_api.post(
            "/v1/plans", json={"labels": LABELS, "split": STRATIFIED, "algorithm": algorithm}
        ).json()
        assert plan["versions"]["stratify"] == "stratified-v1"
    plain = module_api.post(
        "/v1/plans", json={"labels": LABELS, "split": {"fractions": [0.6, 0.4], "seed": 1}}
    ).json()
    assert "stratify" not in plain["versions"]
