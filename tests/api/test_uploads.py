"""POST /v1/datasets in every format: same labels, same dataset; bad bodies get a clear 4xx."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sampleplan.service.config import Settings
from sampleplan.service.main import create_app

MAX_UPLOAD = 4096
MAX_LABELS = 300


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db: Path = tmp_path_factory.mktemp("uploads") / "uploads.sqlite3"
    settings = Settings(
        database_url=f"sqlite:///{db}", max_body_bytes=MAX_UPLOAD, max_labels=MAX_LABELS
    )
    with TestClient(create_app(settings)) as c:
        yield c


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=array.dtype.kind == "O")
    return buffer.getvalue()


def post(client: TestClient, body: bytes, content_type: str | None, **params: str) -> Any:
    headers = {"content-type": content_type} if content_type else {}
    return client.post("/v1/datasets", content=body, headers=headers, params=params)


INTS = [4, 0, 0, 9, 4, 4, 1]
NAMES = ["dog", "cat", "cat", "emu", "dog"]


def int_bodies() -> list[tuple[str, bytes, str, dict[str, str]]]:
    return [
        ("npy int64", npy(np.array(INTS, dtype=np.int64)), "application/x-npy", {}),
        ("npy uint8", npy(np.array(INTS, dtype=np.uint8)), "application/x-npy", {}),
        ("raw int64", np.array(INTS, "<i8").tobytes(), "application/octet-stream", {}),
        (
            "raw int32",
            np.array(INTS, "<i4").tobytes(),
            "application/octet-stream",
            {"dtype": "int32"},
        ),
        (
            "csv",
            ("path,label\n" + "".join(f"{i}.png,{v}\n" for i, v in enumerate(INTS))).encode(),
            "text/csv",
            {},
        ),
        (
            "csv named column",
            ("y,path\n" + "".join(f"{v},p\n" for v in INTS)).encode(),
            "text/csv",
            {"label_column": "y"},
        ),
        (
            "ndjson",
            "".join(json.dumps({"label": v}) + "\n" for v in INTS).encode(),
            "application/x-ndjson",
            {},
        ),
        (
            "jsonl alias",
            "".join(json.dumps({"t": v}) + "\n" for v in INTS).encode(),
            "application/jsonl",
            {"label_column": "t"},
        ),
    ]


def name_bodies() -> list[tuple[str, bytes, str, dict[str, str]]]:
    return [
        ("npy unicode", npy(np.array(NAMES)), "application/x-npy", {}),
        ("csv", ("label\n" + "\n".join(NAMES)).encode(), "text/csv; charset=utf-8", {}),
        (
            "csv latin-1",
            ("label\n" + "\n".join(NAMES)).encode("latin-1"),
            "text/csv; charset=latin-1",
            {},
        ),
        (
            "ndjson",
            "".join(json.dumps({"label": v}) + "\n" for v in NAMES).encode(),
            "application/x-ndjson",
            {},
        ),
        (
            "paths",
            "".join(f"{v}/{i:03d}.png\n" for i, v in enumerate(NAMES)).encode(),
            "text/plain",
            {},
        ),
    ]


@pytest.mark.parametrize(
    ("labels", "bodies"), [(INTS, int_bodies()), (NAMES, name_bodies())], ids=["ints", "names"]
)
def test_every_format_is_the_json_dataset(
    client: TestClient, labels: list[Any], bodies: list[tuple[str, bytes, str, dict[str, str]]]
) -> None:
    reference = client.post("/v1/datasets", json={"labels": labels})
    assert reference.status_code in (200, 201)
    for name, body, content_type, params in bodies:
        response = post(client, body, content_type, **params)
        assert response.status_code == 200, (name, response.text)  # the JSON upload made it
        assert response.json() == reference.json(), name


def test_first_binary_upload_is_201_and_plans_work(client: TestClient) -> None:
    labels = np.arange(250, dtype="<i4") % 7
    created = post(client, labels.tobytes(), "application/octet-stream", dtype="int32")
    assert created.status_code == 201
    assert created.json()["counts"] == np.bincount(labels).tolist()
    again = post(client, npy(labels.astype(np.int64)), "application/x-npy")
    assert (again.status_code, again.json()["id"]) == (200, created.json()["id"])
    plan = client.post("/v1/plans", json={"dataset_id": created.json()["id"]})
    assert plan.status_code == 201


def test_openapi_lists_every_upload_type(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/datasets"]["post"]
    # The forms client generators send in `content`, the others beside it (NOTE [Bodies
    # generators can send] in sampleplan.service.api.uploads).
    body = operation["requestBody"]
    assert set(body["content"]) == {"application/json", "application/octet-stream"}
    assert {*body["content"], *body["x-other-content"]} == {
        "application/json",
        "application/x-npy",
        "application/x-npz",
        "application/octet-stream",
        "text/csv",
        "application/x-ndjson",
        "text/plain",
        "application/vnd.apache.parquet",
        "application/vnd.apache.arrow.stream",
        "application/vnd.apache.arrow.file",
    }
    params = {p["name"] for p in operation["parameters"]}
    assert params == {"label_column", "dtype", "label_separator", "length_column"}
    assert {"413", "415", "422"} <= set(operation["responses"])


# (case id, body, content type, query params, status, words the detail must contain)
BAD: list[tuple[str, bytes, str | None, dict[str, str], int, str]] = [
    ("csv empty", b"", "text/csv", {}, 422, "the CSV manifest is empty"),
    ("csv header only", b"path,label\n", "text/csv", {}, 422, "header but no rows"),
    ("csv missing column", b"path,cls\na,1\n", "text/csv", {}, 422, "no column 'label'"),
    (
        "csv wrong column asked",
        b"path,label\na,1\n",
        "text/csv",
        {"label_column": "y"},
        422,
        "no column 'y'",
    ),
    (
        "csv ragged",
        b"path,label\na,1\nb,2,3\nc,4\n",
        "text/csv",
        {},
        422,
        "line 3 of the CSV manifest has 3 fields",
    ),
    ("csv not utf-8", b"label\ncaf\xe9\n", "text/csv", {}, 422, "not valid UTF-8: byte 0xe9"),
    ("csv unknown charset", b"label\na\n", "text/csv; charset=x-nope", {}, 415, "unknown charset"),
    ("ndjson empty", b"\n", "application/x-ndjson", {}, 422, "JSON Lines manifest is empty"),
    (
        "ndjson bad line",
        b'{"label": 1}\n{"label": \n',
        "application/x-ndjson",
        {},
        422,
        "line 2 of the JSON Lines manifest is not valid JSON",
    ),
    (
        "ndjson missing key",
        b'{"label": 1}\n{"y": 1}\n',
        "application/x-ndjson",
        {},
        422,
        "line 2 of the JSON Lines manifest has no 'label' key",
    ),
    (
        "ndjson mixed",
        b'{"label": 1}\n{"label": "a"}\n',
        "application/x-ndjson",
        {},
        422,
        "all integers or all strings",
    ),
    (
        "ndjson not utf-8",
        b'{"label": "\xff"}\n',
        "application/x-ndjson",
        {},
        422,
        "not valid UTF-8",
    ),
    ("paths empty", b"", "text/plain", {}, 422, "the path list is empty"),
    (
        "paths no class",
        b"cat/1.png\nlonely.png\n",
        "text/plain",
        {},
        422,
        "line 2 of the path list ('lonely.png') has no class folder",
    ),
    ("paths absolute", b"/srv/cat/1.png\n", "text/plain", {}, 422, "absolute"),
    ("paths not utf-8", b"caf\xe9/1.png\n", "text/plain", {}, 422, "path list is not valid UTF-8"),
    ("npy floats", npy(np.array([0.5, 1.5])), "application/x-npy", {}, 422, "dtype float64"),
    ("npy 2-d", npy(np.zeros((2, 3), dtype=np.int64)), "application/x-npy", {}, 422, "1-d array"),
    ("npy garbage", b"\x00\x01\x02", "application/x-npy", {}, 422, "not a .npy file"),
    (
        "npy pickled objects",
        npy(np.array([1, "a"], dtype=object)),
        "application/x-npy",
        {},
        422,
        "cannot be read",
    ),
    ("raw ragged", b"\x00" * 12, "application/octet-stream", {}, 422, "not a multiple of 8"),
    ("raw empty", b"", "application/octet-stream", {}, 422, "must not be empty"),
    ("raw bad dtype", b"\x00" * 8, "application/octet-stream", {"dtype": "float64"}, 422, "dtype"),
    (
        "raw too many labels",
        b"\x00" * 8 * (MAX_LABELS + 1),
        "application/octet-stream",
        {},
        413,
        f"at most {MAX_LABELS}",
    ),
    (
        "unknown type",
        b"<labels/>",
        "application/xml",
        {},
        415,
        "cannot read a dataset from Content-Type 'application/xml'",
    ),
    ("no content type", b"0,1,2", None, {}, 415, "no Content-Type"),
    ("json malformed", b'{"labels": [0,', "application/json", {}, 400, "not valid JSON"),
    ("json missing labels", b"{}", "application/json", {}, 422, "labels: Field required"),
    (
        "json extra field",
        b'{"labels": [0], "x": 1}',
        "application/json",
        {},
        422,
        "x: Extra inputs",
    ),
    (
        "body over max_body_bytes",
        b"0" * (MAX_UPLOAD + 1),
        "text/plain",
        {},
        413,
        f"at most {MAX_UPLOAD} bytes",
    ),
    ("empty label column", b"label\n1\n", "text/csv", {"label_column": ""}, 422, "label_column"),
]


@pytest.mark.parametrize(
    ("body", "content_type", "params", "status", "words"),
    [c[1:] for c in BAD],
    ids=[c[0] for c in BAD],
)
def test_bad_uploads_are_a_clear_4xx_and_write_nothing(
    client: TestClient,
    body: bytes,
    content_type: str | None,
    params: dict[str, str],
    status: int,
    words: str,
) -> None:
    store = client.app.state.catalog.store  # type: ignore[attr-defined]
    before = store.count()
    response = post(client, body, content_type, **params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert words in problem["detail"], problem["detail"]
    assert store.count() == before


def test_a_streamed_body_is_cut_off_at_the_cap(client: TestClient) -> None:
    # No Content-Length (chunked): the cap is found while reading.
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_UPLOAD // 100 + 5):
            yield b"cat/1.png\n" * 10

    response = client.post("/v1/datasets", content=chunks(), headers={"content-type": "text/plain"})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    # The same cap protects every other body.
    big_plan = client.post("/v1/plans", json={"labels": [0] * MAX_UPLOAD})
    assert big_plan.status_code == 413


def test_a_known_dataset_is_not_rewritten_and_a_new_one_is_not_read_back(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = client.app.state.catalog.store  # type: ignore[attr-defined]
    writes: list[str] = []
    reads: list[str] = []
    put, get_record = store.put_dataset, store.get_dataset
    monkeypatch.setattr(
        store, "put_dataset", lambda record: writes.append(record.id) or put(record)
    )
    monkeypatch.setattr(store, "get_dataset", lambda i: reads.append(i) or get_record(i))
    labels = np.arange(120, dtype="<i8") % 11
    first = post(client, labels.tobytes(), "application/octet-stream")
    second = post(client, npy(labels), "application/x-npy")
    assert (first.status_code, second.status_code) == (201, 200)
    assert writes == [first.json()["id"]]  # the second upload found it stored
    plan = client.post("/v1/plans", json={"dataset_id": first.json()["id"], "seed": 3})
    assert plan.status_code == 201
    assert reads == []  # the labels just uploaded were still in memory
