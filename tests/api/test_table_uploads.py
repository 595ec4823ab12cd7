"""POST /v1/datasets with Parquet and Arrow IPC bodies: the same dataset as every other
format; a bad table gets a clear problem+json 4xx and stores nothing."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from sampleplan.service.config import Settings
from sampleplan.service.main import create_app

PARQUET = "application/vnd.apache.parquet"
STREAM = "application/vnd.apache.arrow.stream"
FILE = "application/vnd.apache.arrow.file"
MAX_LABELS = 1000


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db: Path = tmp_path_factory.mktemp("tables") / "tables.sqlite3"
    settings = Settings(
        database_url=f"sqlite:///{db}", max_labels=MAX_LABELS, max_body_bytes=1 << 20
    )
    with TestClient(create_app(settings)) as c:
        yield c


def parquet(table: pa.Table, **options: Any) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def ipc(table: pa.Table, *, file: bool) -> bytes:
    sink = pa.BufferOutputStream()
    opener = pa.ipc.new_file if file else pa.ipc.new_stream
    with opener(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=4):
            writer.write_batch(batch)
    return bytes(sink.getvalue())


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def post(client: TestClient, body: bytes, content_type: str, **params: str) -> Any:
    return client.post(
        "/v1/datasets", content=body, headers={"content-type": content_type}, params=params
    )


INTS = [4, 0, 0, 9, 4, 4, 1, 9, 0]
NAMES = ["dog", "cat", "cat", "émeu", "dog", "Zebra", "cat", "dog", "ant"]


def bodies(values: list[Any]) -> list[tuple[str, bytes, str, dict[str, str]]]:
    table = pa.table({"path": [f"{i}.png" for i in range(len(values))], "y": values})
    csv = "path,y\n" + "".join(f"{i}.png,{v}\n" for i, v in enumerate(values))
    out = [
        ("csv", csv.encode(), "text/csv", {"label_column": "y"}),
        ("npy", npy(np.array(values)), "application/x-npy", {}),
        ("parquet", parquet(table), PARQUET, {"label_column": "y"}),
        ("parquet plain", parquet(table, use_dictionary=False), PARQUET, {"label_column": "y"}),
        (
            "parquet dictionary-encoded",
            parquet(table.set_column(1, "y", table.column("y").dictionary_encode())),
            PARQUET,
            {"label_column": "y"},
        ),
        ("arrow stream", ipc(table, file=False), STREAM, {"label_column": "y"}),
        ("arrow file", ipc(table, file=True), FILE, {"label_column": "y"}),
        ("arrow file sent as a stream", ipc(table, file=True), STREAM, {"label_column": "y"}),
    ]
    return out


@pytest.mark.parametrize("values", [INTS, NAMES], ids=["ints", "strings"])
def test_every_format_gives_the_same_dataset(client: TestClient, values: list[Any]) -> None:
    expected = client.post("/v1/datasets", json={"labels": values})
    assert expected.status_code in (200, 201)
    want = expected.json()
    for name, body, content_type, params in bodies(values):
        got = post(client, body, content_type, **params)
        assert got.status_code == 200, (name, got.text)
        assert got.json() == want, name
    if isinstance(values[0], str):
        assert want["classes"] == sorted(set(values))  # code points, as Python sorts str


def test_label_column_defaults_to_label(client: TestClient) -> None:
    got = post(client, parquet(pa.table({"label": [1, 2, 2]})), PARQUET)
    assert got.status_code in (200, 201) and got.json()["counts"] == [1, 2]


def stored(client: TestClient) -> tuple[int, int]:
    counts: tuple[int, int] = client.app.state.catalog.store.count()  # type: ignore[attr-defined]
    return counts


WIDE = pa.table(
    {
        "x": [0.5, 1.5, 2.5],
        "flag": [True, False, True],
        "maybe": [1, None, 2],
        "tags": [[1], [2, 3], []],
        "point": [{"a": 1}, {"a": 2}, {"a": 3}],
        "matrix": [[[1]], [[2]], [[3]]],
        "label": [1, 2, 3],
    }
)

# (case, body, content type, params, status, words the detail must contain)
BAD: list[tuple[str, bytes, str, dict[str, str], int, list[str]]] = [
    ("empty body", b"", PARQUET, {}, 422, ["empty", "Parquet"]),
    ("empty arrow body", b"", STREAM, {}, 422, ["empty", "Arrow"]),
    ("not parquet", b"label\n1\n2\n", PARQUET, {}, 422, ["not a Parquet file"]),
    ("not arrow", b"label\n1\n2\n", FILE, {}, 422, ["not an Arrow IPC"]),
    ("parquet sent as arrow", parquet(WIDE), STREAM, {}, 422, ["not an Arrow IPC"]),
    ("truncated parquet", parquet(WIDE)[:-20], PARQUET, {}, 422, ["Parquet"]),
    (
        "missing column",
        parquet(WIDE),
        PARQUET,
        {"label_column": "target"},
        422,
        ["'target'", "'x', 'flag', 'maybe', 'tags', 'point', 'matrix', 'label'"],
    ),
    (
        "missing column in arrow",
        ipc(WIDE, file=False),
        STREAM,
        {"label_column": "target"},
        422,
        ["'target'", "'label'"],
    ),
    ("float column", parquet(WIDE), PARQUET, {"label_column": "x"}, 422, ["float", "double"]),
    ("boolean column", parquet(WIDE), PARQUET, {"label_column": "flag"}, 422, ["boolean"]),
    ("nulls", parquet(WIDE), PARQUET, {"label_column": "maybe"}, 422, ["1 null", "row 1"]),
    ("nulls in arrow", ipc(WIDE, file=True), FILE, {"label_column": "maybe"}, 422, ["null"]),
    ("struct column", parquet(WIDE), PARQUET, {"label_column": "point"}, 422, ["nested"]),
    ("list of lists", parquet(WIDE), PARQUET, {"label_column": "matrix"}, 422, ["label sets"]),
    (
        "separator with a table",
        parquet(WIDE),
        PARQUET,
        {"label_column": "tags", "label_separator": "|"},
        422,
        ["text/csv uploads only"],
    ),
    (
        "no rows",
        parquet(pa.table({"label": pa.array([], pa.int64())})),
        PARQUET,
        {},
        422,
        ["empty"],
    ),
    (
        "more rows than max_labels",
        parquet(pa.table({"label": np.zeros(MAX_LABELS + 1, dtype=np.int8)})),
        PARQUET,
        {},
        413,
        [str(MAX_LABELS)],
    ),
    ("body over max_body_bytes", b"\0" * ((1 << 20) + 1), PARQUET, {}, 413, ["larger"]),
]


@pytest.mark.parametrize(
    ("body", "content_type", "params", "status", "words"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_bad_tables_get_a_clear_problem_and_store_nothing(
    client: TestClient,
    body: bytes,
    content_type: str,
    params: dict[str, str],
    status: int,
    words: list[str],
) -> None:
    before = stored(client)
    got = post(client, body, content_type, **params)
    assert got.status_code == status, got.text
    assert got.headers["content-type"].startswith("application/problem+json")
    problem = json.loads(got.text)
    for word in words:
        assert word in problem["detail"], problem["detail"]
    assert stored(client) == before


def test_the_spooled_body_is_removed(client: TestClient, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    ok = post(client, parquet(pa.table({"label": [5, 6]})), PARQUET)
    bad = post(client, b"nonsense", PARQUET)
    assert ok.status_code in (200, 201) and bad.status_code == 422
    assert list(tmp_path.iterdir()) == []


def test_a_list_column_is_a_label_set_dataset(client: TestClient) -> None:
    """Parquet and Arrow list columns are label sets (issue 10): the JSON lists' dataset."""
    expected = client.post("/v1/datasets", json={"labels": [[1], [2, 3], []]})
    assert expected.json()["multi_label"] is True
    for body, media in ((parquet(WIDE), PARQUET), (ipc(WIDE, file=False), STREAM)):
        response = client.post(
            "/v1/datasets",
            content=body,
            headers={"content-type": media},
            params={"label_column": "tags"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["id"] == expected.json()["id"]
