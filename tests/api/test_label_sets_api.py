"""Label sets over HTTP: every upload format, plans, streams against torch, offsets, report."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from tests.helpers import reference

SETS = [["cat", "dog"], [], ["emu"], ["dog"], ["cat"], ["cat", "emu"], ["cat"], ["dog", "cat"]]


def class_aware_sum(sets: list[list[str]]) -> list[float]:
    carriers: dict[str, int] = {}
    for labels in sets:
        for c in set(labels):
            carriers[c] = carriers.get(c, 0) + 1
    out = []
    for labels in sets:
        total = 0.0
        for c in sorted(set(labels)):
            total += 1.0 / carriers[c]
        out.append(total)
    return out


def test_every_format_gives_the_same_dataset(module_api: TestClient) -> None:
    created = module_api.post("/v1/datasets", json={"labels": SETS})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["multi_label"] is True
    assert body["classes"] == ["cat", "dog", "emu"]
    assert body["counts"] == [5, 3, 2]
    assert body["unlabelled"] == 1
    assert body["label_cardinality"] == 10 / 8
    dataset_id = body["id"]

    jsonl = "".join(json.dumps({"path": f"{i}.png", "tags": s}) + "\n" for i, s in enumerate(SETS))
    csv = "path,tags\n" + "".join(f"{i}.png,{'|'.join(s)}\n" for i, s in enumerate(SETS))
    flat = [c for s in SETS for c in s]
    offsets = np.cumsum([0] + [len(s) for s in SETS])
    npz = io.BytesIO()
    np.savez(npz, offsets=offsets, values=np.array(flat))
    for content, media, params in (
        (jsonl.encode(), "application/x-ndjson", {"label_column": "tags"}),
        (csv.encode(), "text/csv", {"label_column": "tags", "label_separator": "|"}),
        (npz.getvalue(), "application/x-npz", {}),
    ):
        again = module_api.post(
            "/v1/datasets", content=content, headers={"content-type": media}, params=params
        )
        assert (again.status_code, again.json()["id"]) == (200, dataset_id), (media, again.text)
    # Single labels keep their ids: the same CSV without the separator is another dataset.
    single = module_api.post(
        "/v1/datasets", content=b"label\ncat\ndog\n", headers={"content-type": "text/csv"}
    )
    assert single.json()["multi_label"] is False
    assert single.json()["unlabelled"] is None

    offsets_json = module_api.get(f"/v1/datasets/{dataset_id}/offsets").json()
    assert offsets_json["offsets"] == offsets.tolist()
    codes = module_api.get(f"/v1/datasets/{dataset_id}/codes").json()["codes"]
    assert codes == [["cat", "dog", "emu"].index(c) for s in SETS for c in sorted(s)]
    single_offsets = module_api.get(f"/v1/datasets/{single.json()['id']}/offsets")
    assert single_offsets.status_code == 404
    assert single_offsets.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("world_size", [1, 3])
def test_plan_streams_are_torch_wrs_on_the_label_set_weights(
    module_api: TestClient, world_size: int
) -> None:
    dataset_id = module_api.post("/v1/datasets", json={"labels": SETS * 5}).json()["id"]
    plan = module_api.post(
        "/v1/plans",
        json={"dataset_id": dataset_id, "seed": 3, "unlabelled_weight": 0.1, "num_samples": 90},
    )
    assert plan.status_code in (200, 201), plan.text
    body = plan.json()
    assert body["config"]["unlabelled_weight"] == 0.1
    assert "label_reduce" not in body["config"]
    assert body["label_sets"]["unlabelled"] == 5
    weights = [w if w else 0.1 for w in class_aware_sum(SETS * 5)]
    served = module_api.get(f"/v1/plans/{body['id']}/weights").json()["weights"]
    assert served == weights
    stream = reference.weighted_stream(weights, 90, True, 3 + 2)
    for rank in range(world_size):
        page = module_api.get(
            f"/v1/plans/{body['id']}/indices",
            params={"epoch": 2, "rank": rank, "world_size": world_size, "offset": 4, "limit": 20},
        ).json()["indices"]
        assert page == reference.distributed_shard(stream, rank, world_size)[4:24]
    summary = module_api.get(f"/v1/plans/{body['id']}/indices/summary", params={"epoch": 2}).json()
    drawn = [SETS[i % len(SETS)] for i in stream]
    assert summary["counts"] == [sum(c in s for s in drawn) for c in ("cat", "dog", "emu")]
    report = module_api.get(f"/v1/plans/{body['id']}/report")
    assert report.status_code == 200
    assert "emu" in report.text
    assert "Label shares before and after balancing" in report.text
    assert "labels per sample on average" in report.text


def test_repeat_factor_and_stratified_plans_survive_a_restart(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", plan_cache_size=0)
    request = {
        "labels": SETS * 4,
        "strategy": "repeat_factor",
        "threshold": 0.3,
        "algorithm": "hierarchical",
        "split": {"fractions": [0.75, 0.25], "seed": 1, "stratify": True},
    }
    with TestClient(create_app(settings)) as api:
        first = api.post("/v1/plans", json=request)
        assert first.status_code == 201, first.text
        plan_id = first.json()["id"]
        assert first.json()["config"]["split"]["stratify"] is True
        page = api.get(f"/v1/plans/{plan_id}/indices", params={"limit": 50}).json()["indices"]
    with TestClient(create_app(settings)) as api:
        again = api.get(f"/v1/plans/{plan_id}")
        assert again.json()["classes"] == first.json()["classes"]
        assert (
            api.get(f"/v1/plans/{plan_id}/indices", params={"limit": 50}).json()["indices"] == page
        )
        assert api.post("/v1/plans", json=request).status_code == 200


def test_sample_endpoint_takes_label_sets(module_api: TestClient) -> None:
    answer = module_api.post("/v1/sample", json={"labels": SETS, "label_reduce": "max", "seed": 1})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["counts"] == [5, 3, 2]
    n = {"cat": 5, "dog": 3, "emu": 2}
    weights = [max((1.0 / n[c] for c in s), default=0.0) for s in SETS]
    assert body["weights"] == weights
    assert body["indices"] == reference.weighted_stream(weights, len(SETS), True, 1)
