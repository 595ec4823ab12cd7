"""create_dataset with pyarrow and pandas labels, create_dataset_from_file with Parquet and
Arrow files: the JSON dataset's id, in the cheapest binary form, only the label column sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from sampleplan.client import ClientRequestError, SamplePlanClient
from tests.helpers.servers import LiveServer

INTS = [3, 0, 0, 7, 3, 3, 1, 7, 0, 0]
NAMES = ["dog", "cat", "cat", "émeu", "dog", "Zebra", "cat", "dog", "ant", "cat"]


class Recorder:
    """What the client sent: content types and body sizes."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, str]] = []

    def __call__(self, request: httpx.Request) -> None:
        request.read()
        self.sent.append(
            (
                request.headers.get("content-type", ""),
                len(request.content),
                request.url.params.get("dtype", ""),
            )
        )


def labels_forms(values: list[Any]) -> list[tuple[str, Any]]:
    forms: list[tuple[str, Any]] = [
        ("pyarrow array", pa.array(values)),
        # A Hugging Face datasets column: ds.data.column("label") is a ChunkedArray.
        ("chunked array", pa.chunked_array([values[:4], values[4:7], values[7:]])),
        ("dictionary array", pa.array(values).dictionary_encode()),
        ("pandas series", pd.Series(values)),
        ("pandas categorical", pd.Categorical(values)),
        ("categorical series", pd.Series(values, dtype="category")),
        ("numpy", np.array(values)),
    ]
    return forms


@pytest.mark.parametrize("values", [INTS, NAMES], ids=["ints", "strings"])
def test_arrow_and_pandas_labels_give_the_json_dataset(
    live_server: LiveServer, values: list[Any]
) -> None:
    record = Recorder()
    http = httpx.Client(event_hooks={"request": [record]})
    with SamplePlanClient(live_server.url, http_client=http) as api:
        expected = api.create_dataset(values, binary=False)
        for name, labels in labels_forms(values):
            got = api.create_dataset(labels)
            assert (got.id, got.classes) == (expected.id, expected.classes), name
    http.close()
    kinds = [content_type for content_type, _, _ in record.sent[1:]]
    if isinstance(values[0], int):
        # Integers without nulls: raw class indices in one byte each; pandas categoricals
        # of integers go as Arrow dictionaries.
        assert record.sent[1][2] == "uint8"
        assert kinds.count("application/octet-stream") >= 4
    else:
        # Strings: dictionary-encoded Arrow streams (numpy str arrays as JSON or Arrow).
        assert kinds.count("application/vnd.apache.arrow.stream") >= 6


def test_nulls_and_floats_are_refused_by_the_service(live_server: LiveServer) -> None:
    with SamplePlanClient(live_server.url) as api:
        with pytest.raises(ClientRequestError, match="null"):
            api.create_dataset(pa.array([1, None, 2]))
        with pytest.raises(ClientRequestError, match="null"):
            api.create_dataset(pd.Series([1, None, 2], dtype="Int64"))
        with pytest.raises(ClientRequestError, match="float"):
            api.create_dataset(pa.array([1.0, 2.0]))


def write_files(folder: Path, values: list[Any]) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "image": [rng.bytes(2000) for _ in values],  # the bulk of the file: never sent
            "y": values,
        }
    )
    paths = {
        "parquet": folder / "labels.parquet",
        "arrow file": folder / "labels.arrow",
        "feather": folder / "labels.feather",
        "arrow stream": folder / "cache-00000.arrow",  # datasets' cache files are streams
    }
    pq.write_table(table, paths["parquet"])
    with pa.ipc.new_file(paths["arrow file"], table.schema) as writer:
        writer.write_table(table)
    feather.write_feather(table, paths["feather"])
    with pa.ipc.new_stream(paths["arrow stream"], table.schema) as writer:
        writer.write_table(table, max_chunksize=3)
    return paths


@pytest.mark.parametrize("values", [INTS, NAMES], ids=["ints", "strings"])
def test_files_send_only_their_label_column(
    live_server: LiveServer, tmp_path: Path, values: list[Any]
) -> None:
    record = Recorder()
    http = httpx.Client(event_hooks={"request": [record]})
    with SamplePlanClient(live_server.url, http_client=http) as api:
        expected = api.create_dataset(values, binary=False)
        for name, path in write_files(tmp_path, values).items():
            got = api.create_dataset_from_file(path, label_column="y")
            assert got.id == expected.id, name
            _, size, _ = record.sent[-1]
            assert size < 2000, (name, size)  # one image alone is 2000 bytes
        with pytest.raises(
            ValueError,
            match=r"no column 'label'.*'image', 'y' \(name the label column with label_column=\)",
        ):
            api.create_dataset_from_file(tmp_path / "labels.parquet")
    http.close()


def test_a_file_that_is_not_a_table_says_so(live_server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "labels.parquet"
    path.write_text("label\n1\n")
    with (
        SamplePlanClient(live_server.url) as api,
        pytest.raises(ValueError, match=r"'labels\.parquet' is not a Parquet file"),
    ):
        api.create_dataset_from_file(path)
    # media_type= sends the file as it is, and the service answers.
    with (
        SamplePlanClient(live_server.url) as api,
        pytest.raises(ClientRequestError, match="not a Parquet file"),
    ):
        api.create_dataset_from_file(path, media_type="application/vnd.apache.parquet")
