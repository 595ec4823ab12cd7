"""Plan statistics, stream summaries and the report page over HTTP."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from tests.helpers import reference

LABELS = ["cat"] * 40 + ["dog"] * 12 + ["emu"] * 3 + ["<b>yak</b>"] * 5
SPLIT = [0.75, 0.25]


@pytest.fixture(scope="module")
def plan(module_api: TestClient) -> dict[str, object]:
    response = module_api.post(
        "/v1/plans", json={"labels": LABELS, "split": {"fractions": SPLIT, "seed": 7}, "seed": 11}
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_plan_has_statistics_and_manifest(module_api: TestClient, plan: dict[str, object]) -> None:
    body = module_api.get(f"/v1/plans/{plan['id']}").json()
    population = reference.population(len(LABELS), SPLIT, 7)
    counts = Counter(LABELS[i] for i in population)
    rows = {row["class"]: row for row in body["classes"]}
    assert set(rows) == set(LABELS)
    for name, row in rows.items():
        assert row["count"] == counts[name]
        assert row["data_share"] == pytest.approx(counts[name] / len(population))
        assert row["expected_share"] == pytest.approx(
            1 / 4
        )  # inverse frequency: classes draw equally
        assert 0 < row["expected_coverage"] <= 1
        assert row["mean_repeats_per_drawn_sample"] >= 1
    coverage = body["epoch_coverage"]
    assert coverage["exact"] is True
    assert coverage["expected_distinct_samples"] == pytest.approx(
        sum(r["expected_distinct_samples"] for r in body["classes"])
    )
    assert set(body["versions"]) == {
        "algorithm",
        "algorithm_version",
        "torch",
        "numpy",
        "machine",
        "sampleplan",
    }


@pytest.mark.parametrize(("epoch", "rank", "world_size"), [(0, 0, 1), (3, 1, 3), (2, 2, 3)])
def test_stream_summary_matches_torch(
    module_api: TestClient, plan: dict[str, object], epoch: int, rank: int, world_size: int
) -> None:
    population = reference.population(len(LABELS), SPLIT, 7)
    targets = [LABELS[i] for i in population]
    stream = reference.weighted_stream(
        reference.inverse_frequency(targets), len(targets), True, seed=11 + epoch
    )
    shard = reference.distributed_shard(stream, rank, world_size)
    params = {"epoch": epoch, "rank": rank, "world_size": world_size}

    summary = module_api.get(f"/v1/plans/{plan['id']}/indices/summary", params=params).json()
    assert summary["length"] == len(shard)
    assert summary["sha256"] == hashlib.sha256(np.asarray(shard, dtype="<i8").tobytes()).hexdigest()
    drawn = Counter(targets[i] for i in shard)
    assert dict(zip(summary["classes"], summary["counts"], strict=True)) == {
        c: drawn[c] for c in summary["classes"]
    }

    in_dataset = module_api.get(
        f"/v1/plans/{plan['id']}/indices/summary", params={**params, "space": "dataset"}
    ).json()
    mapped = [population[i] for i in shard]
    assert (
        in_dataset["sha256"]
        == hashlib.sha256(np.asarray(mapped, dtype="<i8").tobytes()).hexdigest()
    )
    assert in_dataset["counts"] == summary["counts"]
    # The digest is the digest of what /indices serves.
    served = module_api.get(f"/v1/plans/{plan['id']}/indices", params=params).json()["indices"]
    assert served == shard


@pytest.mark.parametrize(
    ("params", "status"),
    [({"rank": 3, "world_size": 3}, 422), ({"epoch": -1}, 422), ({"space": "nowhere"}, 422)],
)
def test_stream_summary_rejects_bad_requests(
    module_api: TestClient, plan: dict[str, object], params: dict[str, object], status: int
) -> None:
    response = module_api.get(f"/v1/plans/{plan['id']}/indices/summary", params=params)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("path", ["/indices/summary", "/report"])
def test_unknown_plan_is_a_404_problem(module_api: TestClient, path: str) -> None:
    response = module_api.get(f"/v1/plans/{'0' * 64}{path}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Plan not found"


def test_report_is_self_contained_html(module_api: TestClient, plan: dict[str, object]) -> None:
    response = module_api.get(f"/v1/plans/{plan['id']}/report")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    html = response.text
    assert re.search(r"https?://", html) is None  # no external asset, not even a namespace URL
    assert "<script" not in html.lower()
    # One bar per class for the data and one for the draws.
    classes = sorted(set(LABELS))
    assert len(re.findall(r'<rect class="bar-before"', html)) == len(classes)
    assert len(re.findall(r'<rect class="bar-after"', html)) == len(classes)
    # Class names are escaped, never markup.
    assert "<b>yak</b>" not in html
    assert "&lt;b&gt;yak&lt;/b&gt;" in html
    assert plan["id"] in html  # type: ignore[operator]


def test_report_warns_when_minority_samples_repeat(module_api: TestClient) -> None:
    labels = ["common"] * 200 + ["rare"] * 4
    plan = module_api.post("/v1/plans", json={"labels": labels}).json()
    rare = next(r for r in plan["classes"] if r["class"] == "rare")
    assert rare["mean_repeats_per_drawn_sample"] > 20  # about 102 draws of 4 samples
    html = module_api.get(f"/v1/plans/{plan['id']}/report").text
    assert 'class="warning"' in html
    assert re.search(r"class <strong>rare</strong>.*seen 2\d\.\d times per epoch", html)

    balanced = module_api.post("/v1/plans", json={"labels": ["a", "b"] * 50}).json()
    html = module_api.get(f"/v1/plans/{balanced['id']}/report").text
    assert 'class="warning"' not in html


def test_stream_summary_has_a_size_limit(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", max_num_samples=50)
    with TestClient(create_app(settings)) as client:
        plan = client.post(
            "/v1/plans",
            json={"labels": [0, 1] * 10, "algorithm": "hierarchical", "num_samples": 80},
        ).json()
        response = client.get(f"/v1/plans/{plan['id']}/indices/summary")
        assert response.status_code == 422
        assert "at most 50" in response.json()["detail"]
        ok = client.get(f"/v1/plans/{plan['id']}/indices/summary", params={"world_size": 2})
        assert ok.status_code == 200 and ok.json()["length"] == 40
