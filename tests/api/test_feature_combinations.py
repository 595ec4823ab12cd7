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


def test_a_runs_indices_answer_head_as_the_plans_do(module_api: TestClient) -> None:
    plan = module_api.post("/v1/plans", json={"labels": LABELS}).json()
    assert module_api.put("/v1/runs/head-run", json={"plan_id": plan["id"]}).status_code == 201
    query = {"epoch": 0, "world_size": 3, "rank": 1, "start": 7, "pad": "false"}
    get = module_api.get("/v1/runs/head-run/indices", params=query)
    head = module_api.head("/v1/runs/head-run/indices", params=query)
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    for name in ("X-Sampleplan-Stream-Length", "X-Sampleplan-Offset"):
        assert head.headers[name] == get.headers[name]
    assert int(head.headers["X-Sampleplan-Stream-Length"]) == len(get.json()["indices"]) == 14
    assert "head" in module_api.get("/openapi.json").json()["paths"]["/v1/runs/{run_id}/indices"]
