"""Every kind of bad input gets a 4xx problem+json saying what to fix, and writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sampleplan.core.labels import labels_from_array
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app

MAX_LABELS = 10_000
MAX_PAGE = 1_000
MAX_NUM_SAMPLES = 1_000_000


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db: Path = tmp_path_factory.mktemp("bad") / "bad.sqlite3"
    settings = Settings(
        database_url=f"sqlite:///{db}",
        max_labels=MAX_LABELS,
        max_page=MAX_PAGE,
        max_num_samples=MAX_NUM_SAMPLES,
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def ids(client: TestClient) -> dict[str, str]:
    dataset = client.post("/v1/datasets", json={"labels": [0, 0, 0, 1, 1, 2]}).json()["id"]
    plan = client.post("/v1/plans", json={"dataset_id": dataset}).json()["id"]
    big_plan = client.post("/v1/plans", json={"dataset_id": dataset, "num_samples": 5_000}).json()[
        "id"
    ]
    return {"dataset": dataset, "plan": plan, "big_plan": big_plan}


LABELS = [0, 0, 0, 1, 1, 2]
NAN = float("nan")

# (case id, method, path, json body or raw bytes, expected status, words the detail must contain)
CASES: list[tuple[str, str, str, Any, int, str]] = [
    # -- datasets
    ("labels empty", "POST", "/v1/datasets", {"labels": []}, 422, "must not be empty"),
    ("labels a string", "POST", "/v1/datasets", {"labels": "0,1"}, 422, "must be a list"),
    ("labels an object", "POST", "/v1/datasets", {"labels": {"a": 1}}, 422, "must be a list"),
    ("labels null", "POST", "/v1/datasets", {"labels": None}, 422, "must be a list"),
    ("labels mixed", "POST", "/v1/datasets", {"labels": [1, "cat"]}, 422, "labels[1] is a str"),
    ("labels floats", "POST", "/v1/datasets", {"labels": [1.0, 2.0]}, 422, "labels[0] is a float"),
    ("labels booleans", "POST", "/v1/datasets", {"labels": [True, False]}, 422, "boolean"),
    (
        "labels nested after a label",
        "POST",
        "/v1/datasets",
        {"labels": [0, [1]]},
        422,
        "labels[1] is a list",
    ),
    # -- label sets (issue 10)
    (
        "label sets nested too deep",
        "POST",
        "/v1/datasets",
        {"labels": [[[0]], [1]]},
        422,
        "nest one level",
    ),
    (
        "label sets ragged",
        "POST",
        "/v1/datasets",
        {"labels": [[0], 1]},
        422,
        "labels[1] is 1 (int), not a list",
    ),
    (
        "label sets mixed",
        "POST",
        "/v1/datasets",
        {"labels": [[0, 1], ["cat"]]},
        422,
        "labels[1] holds a str",
    ),
    (
        "label sets mixed in one",
        "POST",
        "/v1/datasets",
        {"labels": [[0, "cat"]]},
        422,
        "all integers or all strings",
    ),
    (
        "label sets float",
        "POST",
        "/v1/datasets",
        {"labels": [[0], [1.5]]},
        422,
        "labels[1] holds a float",
    ),
    (
        "label sets null",
        "POST",
        "/v1/datasets",
        {"labels": [[0], [None]]},
        422,
        "labels[1] holds null",
    ),
    ("label sets bool", "POST", "/v1/datasets", {"labels": [[True]]}, 422, "boolean"),
    ("label sets huge int", "POST", "/v1/datasets", {"labels": [[2**70]]}, 422, "int64"),
    ("label sets all empty plan", "POST", "/v1/plans", {"labels": [[], []]}, 422, "all zero"),
    (
        "label reduce unknown",
        "POST",
        "/v1/plans",
        {"labels": [[0, 1], [1]], "label_reduce": "min"},
        422,
        "label_reduce",
    ),
    (
        "label reduce with uniform",
        "POST",
        "/v1/plans",
        {"labels": [[0, 1], [1]], "strategy": "uniform", "label_reduce": "max"},
        422,
        "only applies to class-based",
    ),
    (
        "label reduce with repeat_factor",
        "POST",
        "/v1/plans",
        {"labels": [[0, 1], [1]], "strategy": "repeat_factor", "label_reduce": "max"},
        422,
        "repeat_factor always takes the max",
    ),
    (
        "threshold wrong strategy",
        "POST",
        "/v1/plans",
        {"labels": [[0, 1], [1]], "threshold": 0.1},
        422,
        "only applies to strategy 'repeat_factor'",
    ),
    (
        "threshold negative",
        "POST",
        "/v1/plans",
        {"labels": [[0, 1], [1]], "strategy": "repeat_factor", "threshold": -0.1},
        422,
        "threshold should be",
    ),
    (
        "threshold NaN",
        "POST",
        "/v1/plans",
        b'{"labels": [[0, 1], [1]], "strategy": "repeat_factor", "threshold": NaN}',
        422,
        "threshold",
    ),
    (
        "unlabelled weight negative",
        "POST",
        "/v1/plans",
        {"labels": [[0, 1], []], "unlabelled_weight": -1.0},
        422,
        "unlabelled_weight should be",
    ),
    (
        "unlabelled weight with sample weights",
        "POST",
        "/v1/plans",
        {
            "labels": [[0], []],
            "strategy": "sample_weights",
            "weights": [1, 1],
            "unlabelled_weight": 1.0,
        },
        422,
        "does not apply",
    ),
    (
        "stratify class too small",
        "POST",
        "/v1/plans",
        {"labels": [0, 0, 0, 0, 1], "split": {"fractions": [0.6, 0.4], "stratify": True}},
        422,
        "class 1 has 1 sample",
    ),
    (
        "stratify label too small",
        "POST",
        "/v1/plans",
        {"labels": [[0, 1], [0], [0], [0]], "split": {"fractions": [0.5, 0.5], "stratify": True}},
        422,
        "label 1 has 1 sample",
    ),
    (
        "batching with label sets",
        "POST",
        "/v1/plans",
        {
            "labels": [[0, 1], [1], [0], [1]],
            "batching": {"kind": "m_per_class", "m": 1, "batch_size": 2},
        },
        422,
        "needs single-label data",
    ),
    (
        "schedule with label sets",
        "POST",
        "/v1/plans",
        {
            "labels": [[0, 1], [1], [0], [1]],
            "schedule": {"kind": "power", "start": 0.0, "end": 1.0, "epochs": 5},
        },
        422,
        "needs single-label data",
    ),
    (
        "stratify not a bool",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "split": {"fractions": [0.5, 0.5], "stratify": "yes"}},
        422,
        "stratify",
    ),
    (
        "separator two chars",
        "POST",
        "/v1/datasets?label_separator=%7C%7C",
        b"label\na||b\n",
        422,
        "one character",
    ),
    (
        "separator not csv",
        "POST",
        "/v1/datasets?label_separator=%7C",
        {"labels": [0]},
        422,
        "text/csv uploads only",
    ),
    ("labels NaN", "POST", "/v1/datasets", b'{"labels": [0, NaN]}', 422, "non-finite"),
    ("labels huge int", "POST", "/v1/datasets", {"labels": [2**70]}, 422, "int64"),
    (
        "labels too many",
        "POST",
        "/v1/datasets",
        {"labels": [0] * (MAX_LABELS + 1)},
        413,
        "at most 10000",
    ),
    ("labels missing", "POST", "/v1/datasets", {}, 422, "labels: Field required"),
    (
        "unknown field",
        "POST",
        "/v1/datasets",
        {"labels": [0], "lables": [1]},
        422,
        "lables: Extra inputs",
    ),
    ("body a list", "POST", "/v1/datasets", [0, 1], 422, "valid dictionary"),
    ("malformed JSON", "POST", "/v1/datasets", b'{"labels": [0, 1', 400, "not valid JSON"),
    ("empty body", "POST", "/v1/datasets", b"", 422, "Field required"),
    # -- plans: source
    (
        "no source",
        "POST",
        "/v1/plans",
        {"seed": 1},
        422,
        "exactly one of 'dataset_id', 'labels' or 'sources'",
    ),
    (
        "two sources",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "dataset_id": "{dataset}"},
        422,
        "exactly one",
    ),
    ("unknown dataset", "POST", "/v1/plans", {"dataset_id": "f" * 64}, 404, "no dataset has id"),
    ("inline labels mixed", "POST", "/v1/plans", {"labels": [0, "a"]}, 422, "labels[1] is a str"),
    # -- plans: names
    (
        "bad strategy",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "strategy": "inverse"},
        422,
        "strategy",
    ),
    (
        "bad algorithm",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "algorithm": "numpy"},
        422,
        "algorithm",
    ),
    # -- plans: sample weights
    (
        "weights NaN",
        "POST",
        "/v1/plans",
        b'{"labels": [0, 1, 1], "strategy": "sample_weights", "weights": [1, NaN, 1]}',
        422,
        "weights[1] is nan",
    ),
    (
        "weights inf",
        "POST",
        "/v1/plans",
        b'{"labels": [0, 1, 1], "strategy": "sample_weights", "weights": [1, Infinity, 1]}',
        422,
        "weights[1] is inf",
    ),
    (
        "weights negative",
        "POST",
        "/v1/plans",
        {"labels": [0, 1, 1], "strategy": "sample_weights", "weights": [1, -1, 1]},
        422,
        "non-negative",
    ),
    (
        "weights all zero",
        "POST",
        "/v1/plans",
        {"labels": [0, 1, 1], "strategy": "sample_weights", "weights": [0, 0, 0]},
        422,
        "all zero",
    ),
    (
        "weights tiny, hierarchical",
        "POST",
        "/v1/plans",
        {
            "labels": [0, 1, 1, 1],
            "strategy": "sample_weights",
            "weights": [2.2250738585072014e-308, 0, 0, 0],
            "algorithm": "hierarchical",
        },
        422,
        "mean is subnormal",
    ),
    (
        "weights tiny, hierarchical, sample",
        "POST",
        "/v1/sample",
        {
            "labels": [0, 1, 1, 1],
            "strategy": "sample_weights",
            "weights": [2.2250738585072014e-308, 0, 0, 0],
            "algorithm": "hierarchical",
        },
        422,
        "mean is subnormal",
    ),
    (
        "weights too short",
        "POST",
        "/v1/plans",
        {"labels": [0, 1, 1], "strategy": "sample_weights", "weights": [1, 1]},
        422,
        "one entry per sample",
    ),
    (
        "weights strings",
        "POST",
        "/v1/plans",
        {"labels": [0, 1, 1], "strategy": "sample_weights", "weights": ["1", 1, 1]},
        422,
        "weights[0] is a str",
    ),
    (
        "weights booleans",
        "POST",
        "/v1/plans",
        {"labels": [0, 1, 1], "strategy": "sample_weights", "weights": [True, 1, 1]},
        422,
        "weights[0] is a bool",
    ),
    (
        "weights overflow",
        "POST",
        "/v1/plans",
        {"labels": [0, 1], "strategy": "sample_weights", "weights": [1.7e308, 1.7e308]},
        422,
        "more than float64",
    ),
    (
        "weights missing",
        "POST",
        "/v1/plans",
        {"labels": [0, 1], "strategy": "sample_weights"},
        422,
        "needs a 'weights' list",
    ),
    (
        "weights wrong strategy",
        "POST",
        "/v1/plans",
        {"labels": [0, 1], "weights": [1, 1]},
        422,
        "only applies",
    ),
    # -- plans: class weights
    (
        "class weights unknown class",
        "POST",
        "/v1/plans",
        {"labels": ["cat", "dog"], "strategy": "class_weights", "class_weights": {"cow": 2}},
        422,
        "does not have: 'cow'",
    ),
    (
        "class weights negative",
        "POST",
        "/v1/plans",
        {"labels": ["cat", "dog"], "strategy": "class_weights", "class_weights": {"cat": -2}},
        422,
        "non-negative",
    ),
    (
        "class weights all zero",
        "POST",
        "/v1/plans",
        {
            "labels": ["cat", "dog"],
            "strategy": "class_weights",
            "class_weights": {"cat": 0, "dog": 0},
        },
        422,
        "all zero",
    ),
    (
        "class weights NaN",
        "POST",
        "/v1/plans",
        b'{"labels": ["cat", "dog"], "strategy": "class_weights", "class_weights": {"cat": NaN}}',
        422,
        "finite",
    ),
    (
        "class weights empty",
        "POST",
        "/v1/plans",
        {"labels": ["cat"], "strategy": "class_weights", "class_weights": {}},
        422,
        "non-empty",
    ),
    (
        "class weights not numbers",
        "POST",
        "/v1/plans",
        {"labels": ["cat"], "strategy": "class_weights", "class_weights": {"cat": "2"}},
        422,
        "class_weights.cat",
    ),
    # -- plans: beta
    (
        "beta one",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "strategy": "effective_number", "beta": 1.0},
        422,
        "beta should be in [0, 1)",
    ),
    (
        "beta NaN",
        "POST",
        "/v1/plans",
        b'{"labels": [0, 1], "strategy": "effective_number", "beta": NaN}',
        422,
        "beta",
    ),
    (
        "beta wrong strategy",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "beta": 0.9},
        422,
        "only applies",
    ),
    # -- plans: split
    (
        "split fractions short",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "split": {"fractions": [0.5, 0.2]}},
        422,
        "add up to 1",
    ),
    (
        "split lengths wrong",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "split": {"lengths": [3, 2]}},
        422,
        "add up to 5",
    ),
    (
        "split empty train",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "split": {"lengths": [0, 6]}},
        422,
        "training part",
    ),
    (
        "split both",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "split": {"lengths": [3, 3], "fractions": [0.5, 0.5]}},
        422,
        "exactly one",
    ),
    (
        "split one part",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "split": {"fractions": [1.0]}},
        422,
        "two parts",
    ),
    (
        "split bad seed",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "split": {"fractions": [0.5, 0.5], "seed": -1}},
        422,
        "seed",
    ),
    # -- plans: num_samples, seed, replacement
    (
        "num_samples zero",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "num_samples": 0},
        422,
        "positive integer",
    ),
    (
        "num_samples negative",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "num_samples": -4},
        422,
        "positive integer",
    ),
    (
        "num_samples float",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "num_samples": 3.0},
        422,
        "valid integer",
    ),
    (
        "num_samples over cap",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "num_samples": MAX_NUM_SAMPLES + 1},
        422,
        "limit of 1000000",
    ),
    (
        "num_samples huge",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "num_samples": 10**40},
        422,
        "num_samples",
    ),
    (
        "without replacement too many",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "replacement": False, "num_samples": 7},
        422,
        "replacement=false",
    ),
    (
        "replacement a string",
        "POST",
        "/v1/plans",
        {"labels": LABELS, "replacement": "no"},
        422,
        "replacement",
    ),
    ("seed negative", "POST", "/v1/plans", {"labels": LABELS, "seed": -1}, 422, "[0, 2**32)"),
    ("seed too big", "POST", "/v1/plans", {"labels": LABELS, "seed": 2**32}, 422, "[0, 2**32)"),
    ("seed a string", "POST", "/v1/plans", {"labels": LABELS, "seed": "1"}, 422, "seed"),
    # -- reads
    ("unknown plan", "GET", "/v1/plans/abc", None, 404, "no plan has id"),
    ("unknown plan weights", "GET", "/v1/plans/abc/weights", None, 404, "no plan has id"),
    ("unknown plan indices", "GET", "/v1/plans/abc/indices", None, 404, "no plan has id"),
    ("unknown dataset read", "GET", "/v1/datasets/abc", None, 404, "no dataset has id"),
    (
        "rank >= world_size",
        "GET",
        "/v1/plans/{plan}/indices?rank=2&world_size=2",
        None,
        422,
        "rank should be in [0, world_size)",
    ),
    ("world_size zero", "GET", "/v1/plans/{plan}/indices?world_size=0", None, 422, "world_size"),
    ("epoch negative", "GET", "/v1/plans/{plan}/indices?epoch=-1", None, 422, "epoch"),
    (
        "epoch huge",
        "GET",
        "/v1/plans/{plan}/indices?epoch=99999999999999999999999",
        None,
        422,
        "epoch",
    ),
    ("epoch not a number", "GET", "/v1/plans/{plan}/indices?epoch=one", None, 422, "epoch"),
    ("offset negative", "GET", "/v1/plans/{plan}/indices?offset=-1", None, 422, "offset"),
    ("limit negative", "GET", "/v1/plans/{plan}/indices?limit=-1", None, 422, "limit"),
    ("space unknown", "GET", "/v1/plans/{plan}/indices?space=global", None, 422, "space"),
    (
        "page over cap",
        "GET",
        "/v1/plans/{big_plan}/indices",
        None,
        422,
        "at most 1000 per response",
    ),
    ("no such route", "GET", "/v2/plans", None, 404, "no such endpoint"),
    ("wrong method", "DELETE", "/v1/plans/{plan}", None, 405, "Method Not Allowed"),
    # -- sample
    (
        "sample bad rank",
        "POST",
        "/v1/sample",
        {"labels": LABELS, "rank": 3, "world_size": 2},
        422,
        "rank should be in",
    ),
    (
        "sample page over cap",
        "POST",
        "/v1/sample",
        {"labels": LABELS, "num_samples": 5000},
        422,
        "at most 1000",
    ),
    ("sample bad labels", "POST", "/v1/sample", {"labels": [0.5]}, 422, "float"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_a_clear_4xx_and_writes_nothing(
    client: TestClient,
    ids: dict[str, str],
    method: str,
    path: str,
    body: Any,
    status: int,
    words: str,
) -> None:
    store = client.app.state.catalog.store  # type: ignore[attr-defined]
    before = store.count()
    path = path.format(**ids)
    if isinstance(body, bytes):
        media = "text/csv" if "label_separator" in path else "application/json"
        response = client.request(method, path, content=body, headers={"content-type": media})
    elif isinstance(body, dict) and "dataset_id" in body:
        body = {**body, "dataset_id": body["dataset_id"].format(**ids)}
        response = client.request(method, path, json=body)
    else:
        response = (
            client.request(method, path, json=body)
            if body is not None
            else client.request(method, path)
        )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert set(problem) >= {"type", "title", "status", "detail", "instance"}
    assert words in problem["detail"], problem["detail"]
    assert store.count() == before


def test_torch_algorithm_refuses_more_than_2_24_samples(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'big.sqlite3'}")
    with TestClient(create_app(settings)) as client:
        catalog = client.app.state.catalog  # type: ignore[attr-defined]
        labels = labels_from_array(np.arange(2**24 + 1, dtype=np.int64) % 3)
        info, _ = catalog.create_dataset(labels)
        before = catalog.store.count()
        response = client.post("/v1/plans", json={"dataset_id": info.id})
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert "hierarchical" in response.json()["detail"]
        assert catalog.store.count() == before


@pytest.mark.parametrize("path", ["/v1/plans", "/v1/sample"])
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"labels": [0, 1]}'),
        ("application/x-www-form-urlencoded", b"labels=0&labels=1"),
        (None, b'{"labels": [0, 1]}'),
        ("application/xml", b"<labels/>"),
    ],
)
def test_a_body_that_is_not_json_by_its_type_is_a_415(
    client: TestClient, path: str, content_type: str | None, body: bytes
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith(":unsupported-media-type")
    assert "application/json" in problem["detail"]
    if content_type != "text/plain":  # a path list there
        # As /v1/datasets answers the same mistake.
        assert client.post("/v1/datasets", content=body, headers=headers).status_code == 415


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"],
)
def test_json_types_are_read(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/v1/plans", content=b'{"labels": [0, 1, 1]}', headers={"content-type": content_type}
    )
    assert response.status_code in (200, 201), response.text
    # No body at all: the validation error names what is missing, as before.
    assert client.post("/v1/plans").status_code == 422
