"""The client over a real server: binary by default, JSON on request, uploads in any format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from sampleplan.client import SamplePlanClient, TransportError
from tests.helpers import reference
from tests.helpers.servers import LiveServer

LABELS = [int(x) for x in np.random.default_rng(7).integers(0, 5, 2000)]


def test_binary_and_json_give_the_same_arrays(live_server: LiveServer) -> None:
    with SamplePlanClient(live_server.url, retries=0) as api:
        plan = api.create_plan(labels=LABELS, seed=4, split={"fractions": [0.8, 0.2], "seed": 1})
        for kwargs in (
            {},
            {"epoch": 3, "rank": 1, "world_size": 3, "offset": 5, "limit": 200},
            {"space": "dataset"},
        ):
            binary = api.indices(plan.id, **kwargs)
            as_json = api.indices(plan.id, binary=False, **kwargs)
            assert binary.dtype == np.int64 and binary.flags.writeable
            assert np.array_equal(binary, as_json)
        weights = api.weights(plan.id)
        assert weights.dtype == np.float64
        assert np.array_equal(weights, api.weights(plan.id, binary=False))
        pop = reference.population(len(LABELS), [0.8, 0.2], 1)
        expected = reference.weighted_stream(
            reference.inverse_frequency([LABELS[i] for i in pop]), len(pop), True, 4
        )
        assert api.indices(plan.id).tolist() == expected


def test_integer_labels_upload_as_binary_with_the_json_id(live_server: LiveServer) -> None:
    sent: list[str] = []

    def record(request: httpx.Request) -> None:
        sent.append(request.headers.get("content-type", ""))

    http = httpx.Client(event_hooks={"request": [record]})
    with SamplePlanClient(live_server.url, http_client=http) as api:
        as_json = api.create_dataset(LABELS, binary=False)
        for labels in (
            LABELS,
            np.array(LABELS, dtype=np.int16),
            torch.tensor(LABELS),
            np.array(LABELS) + 2**40 - 2**40,
        ):
            assert api.create_dataset(labels).id == as_json.id
        wide = api.create_dataset(np.array([2**40, 0, 2**40]))
        assert wide.classes == [0, 2**40]
        names = api.create_dataset(["b", "a", "b"])
        assert names.classes == ["a", "b"]
    http.close()
    assert sent == ["application/json"] + ["application/octet-stream"] * 5 + ["application/json"]


def test_files_upload_by_suffix(live_server: LiveServer, tmp_path: Path) -> None:
    names = ["dog", "cat", "cat", "emu"]
    (tmp_path / "labels.npy").write_bytes(b"")
    np.save(tmp_path / "labels.npy", np.array(names))
    (tmp_path / "labels.csv").write_text(
        "file,y\n" + "".join(f"{i}.png,{n}\n" for i, n in enumerate(names))
    )
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps({"label": n}) + "\n" for n in names))
    (tmp_path / "files.txt").write_text("".join(f"{n}/{i}.png\n" for i, n in enumerate(names)))
    (tmp_path / "labels.i32").write_bytes(np.array([1, 2, 2], "<i4").tobytes())
    with SamplePlanClient(live_server.url) as api:
        expected = api.create_dataset(names).id
        assert api.create_dataset_from_file(tmp_path / "labels.npy").id == expected
        assert (
            api.create_dataset_from_file(tmp_path / "labels.csv", label_column="y").id == expected
        )
        assert api.create_dataset_from_file(tmp_path / "labels.jsonl").id == expected
        assert api.create_dataset_from_file(str(tmp_path / "files.txt")).id == expected
        raw = api.create_dataset_from_file(
            tmp_path / "labels.i32", media_type="application/octet-stream", dtype="int32"
        )
        assert raw.id == api.create_dataset([1, 2, 2]).id
        with pytest.raises(ValueError, match=r"cannot tell the format of 'labels\.i32'"):
            api.create_dataset_from_file(tmp_path / "labels.i32")


def binary_response(
    values: np.ndarray, *, cut: int = 0, extra: bytes = b"", length: int | None = None
) -> httpx.Response:
    data = values.astype("<i8").tobytes()
    body = data[: len(data) - cut] + extra
    return httpx.Response(
        200,
        headers={
            "content-type": "application/octet-stream",
            "x-sampleplan-dtype": "<i8",
            "x-sampleplan-length": str(len(values) if length is None else length),
        },
        content=body,
    )


def mock_client(
    responses: list[httpx.Response], seen: list[httpx.Request] | None = None
) -> SamplePlanClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return responses.pop(0)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    return SamplePlanClient("http://sampleplan.test", http_client=http, retries=1, backoff=0.0)


def test_a_truncated_body_is_retried_then_reported() -> None:
    values = np.arange(1000)
    seen: list[httpx.Request] = []
    api = mock_client([binary_response(values, cut=8), binary_response(values)], seen)
    assert api.indices("p").tolist() == values.tolist()
    assert len(seen) == 2
    assert seen[0].headers["accept"] == "application/octet-stream"
    api = mock_client([binary_response(values, cut=8), binary_response(values, extra=b"\0" * 8)])
    with pytest.raises(TransportError, match="longer than the announced"):
        api.indices("p")


def test_a_server_that_answers_json_anyway_still_works() -> None:
    body: dict[str, Any] = {"plan_id": "p", "indices": [3, 1, 2]}
    api = mock_client([httpx.Response(200, json=body)])
    assert api.indices("p").tolist() == [3, 1, 2]


def test_errors_of_binary_requests_are_api_errors() -> None:
    from sampleplan.client import ClientRequestError

    problem = {
        "type": "x",
        "title": "Invalid stream request",
        "status": 422,
        "detail": "rank should be in",
    }
    api = mock_client(
        [httpx.Response(422, json=problem, headers={"content-type": "application/problem+json"})]
    )
    with pytest.raises(ClientRequestError, match="rank should be in"):
        api.indices("p", rank=9)
