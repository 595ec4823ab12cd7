"""Array endpoints: content negotiation, the three wire formats, the epoch cache, the caps."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sampleplan.core.prepared import PreparedPlan
from sampleplan.service.api import arrays
from sampleplan.service.api.arrays import NPY, OCTET_STREAM, negotiate, npy_header
from sampleplan.service.catalog import Catalog
from sampleplan.service.config import Settings
from sampleplan.service.errors import NotAcceptable
from sampleplan.service.main import create_app
from tests.helpers import reference

LABELS = [int(x) for x in np.random.default_rng(3).integers(0, 4, 1800)]
MAX_PAGE = 2000


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db: Path = tmp_path_factory.mktemp("arrays") / "arrays.sqlite3"
    with TestClient(create_app(Settings(database_url=f"sqlite:///{db}", max_page=MAX_PAGE))) as c:
        yield c


@pytest.fixture(scope="module")
def plan_id(client: TestClient) -> str:
    created = client.post("/v1/plans", json={"labels": LABELS, "seed": 5, "num_samples": 1500})
    assert created.status_code in (200, 201)
    plan: str = created.json()["id"]
    return plan


def expected_stream(epoch: int) -> list[int]:
    return reference.weighted_stream(reference.inverse_frequency(LABELS), 1500, True, 5 + epoch)


# -- negotiation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("*", "application/json"),
        ("application/*", "application/json"),
        ("application/octet-stream", OCTET_STREAM),
        ("application/x-npy", NPY),
        ("text/html, application/x-npy;q=0.5", NPY),
        ("application/json;q=0.5, application/octet-stream", OCTET_STREAM),
        ("application/octet-stream, application/json", OCTET_STREAM),
        ("application/json, application/octet-stream", "application/json"),
        ("application/*;q=0.9, application/x-npy", NPY),
        ("*/*;q=0.1, application/json;q=0", OCTET_STREAM),
        ("application/octet-stream;q=0.8, */*;q=0.9", "application/json"),
        ("APPLICATION/OCTET-STREAM", OCTET_STREAM),
        ("application/x-npy; q=bad, application/octet-stream", OCTET_STREAM),
        ("garbage", "application/json"),
    ],
)
def test_negotiate(accept: str | None, chosen: str) -> None:
    assert negotiate(accept) == chosen


@pytest.mark.parametrize(
    "accept", ["text/html", "application/json;q=0, */*;q=0", "image/*", "text/*, application/xml"]
)
def test_negotiate_refuses(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(accept)


@pytest.mark.parametrize("length", [0, 1, 7, 1000, 10**9])
@pytest.mark.parametrize("dtype", ["<i8", "<f8"])
def test_npy_header_is_what_numpy_writes(length: int, dtype: str) -> None:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": (length,)}
    )
    assert npy_header(np.dtype(dtype), length) == buffer.getvalue()
    assert len(npy_header(np.dtype(dtype), length)) % 64 == 0


# -- the three formats over HTTP ---------------------------------------------------------------


def get(client: TestClient, path: str, accept: str | None, **params: Any) -> Any:
    return client.get(path, params=params, headers={"accept": accept} if accept else {})


@pytest.mark.parametrize(
    "params", [{"epoch": 1}, {"epoch": 2, "world_size": 3, "rank": 2, "offset": 17, "limit": 300}]
)
def test_json_octet_stream_and_npy_are_the_same_page(
    client: TestClient, plan_id: str, params: dict[str, Any]
) -> None:
    path = f"/v1/plans/{plan_id}/indices"
    as_json = get(client, path, None, **params)
    raw = get(client, path, OCTET_STREAM, **params)
    as_npy = get(client, path, NPY, **params)
    assert [r.status_code for r in (as_json, raw, as_npy)] == [200, 200, 200]
    expected = reference.distributed_shard(
        expected_stream(params["epoch"]), params.get("rank", 0), params.get("world_size", 1)
    )
    offset = params.get("offset", 0)
    expected = expected[offset : offset + params["limit"]] if "limit" in params else expected
    assert as_json.json()["indices"] == expected
    assert as_json.headers["content-type"] == "application/json"
    assert raw.headers["content-type"] == OCTET_STREAM
    assert np.frombuffer(raw.content, dtype="<i8").tolist() == expected
    assert as_npy.headers["content-type"] == NPY
    loaded = np.load(io.BytesIO(as_npy.content), allow_pickle=False)
    assert loaded.dtype == np.dtype("<i8") and loaded.tolist() == expected
    for response in (as_json, raw, as_npy):
        assert response.headers["x-sampleplan-dtype"] == "<i8"
        assert response.headers["x-sampleplan-length"] == str(len(expected))
        assert response.headers["x-sampleplan-stream-length"] == str(as_json.json()["length"])
        assert response.headers["vary"] == "Accept"
    assert int(raw.headers["content-length"]) == 8 * len(expected)
    assert int(as_npy.headers["content-length"]) == len(as_npy.content)


def test_weights_in_every_format(client: TestClient, plan_id: str) -> None:
    path = f"/v1/plans/{plan_id}/weights"
    expected = reference.inverse_frequency(LABELS)
    assert get(client, path, None).json()["weights"] == expected
    raw = get(client, path, OCTET_STREAM)
    assert raw.headers["x-sampleplan-dtype"] == "<f8"
    assert np.frombuffer(raw.content, dtype="<f8").tolist() == expected
    assert np.load(io.BytesIO(get(client, path, NPY).content)).tolist() == expected


def test_large_arrays_stream_in_chunks(
    client: TestClient, plan_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunk sizes make this plan's arrays span many chunks, in both writers.
    monkeypatch.setattr(arrays, "CHUNK_BYTES", 1000)
    monkeypatch.setattr(arrays, "JSON_CHUNK_VALUES", 7)
    expected = expected_stream(3)
    path = f"/v1/plans/{plan_id}/indices"
    assert get(client, path, None, epoch=3).json()["indices"] == expected
    assert (
        np.frombuffer(get(client, path, OCTET_STREAM, epoch=3).content, "<i8").tolist() == expected
    )
    assert np.load(io.BytesIO(get(client, path, NPY, epoch=3).content)).tolist() == expected
    assert get(client, f"/v1/plans/{plan_id}/weights", None).json()[
        "weights"
    ] == reference.inverse_frequency(LABELS)


def test_not_acceptable_is_406_before_any_work(client: TestClient, plan_id: str) -> None:
    for path in (
        f"/v1/plans/{plan_id}/indices",
        f"/v1/plans/{plan_id}/weights",
        "/v1/plans/nope/indices",
    ):
        response = get(client, path, "text/html")
        assert response.status_code == 406, path
        assert response.headers["content-type"] == "application/problem+json"
        assert "application/octet-stream" in response.json()["detail"]
    sample = client.post("/v1/sample", json={"labels": [0, 1, 1]}, headers={"accept": OCTET_STREAM})
    assert sample.status_code == 406
    assert (
        client.post("/v1/sample", json={"labels": [0, 1, 1]}, headers={"accept": "*/*"}).status_code
        == 200
    )


@pytest.mark.parametrize("accept", [OCTET_STREAM, NPY, None])
def test_head_gives_the_headers_of_get(
    client: TestClient, plan_id: str, accept: str | None
) -> None:
    path = f"/v1/plans/{plan_id}/indices"
    full = get(client, path, accept, epoch=4, limit=100)
    head = client.head(
        path, params={"epoch": 4, "limit": 100}, headers={"accept": accept} if accept else {}
    )
    assert head.status_code == 200
    assert head.content == b""
    for name in (
        "content-type",
        "x-sampleplan-dtype",
        "x-sampleplan-length",
        "x-sampleplan-stream-length",
    ):
        assert head.headers[name] == full.headers[name]
    if accept is not None:
        assert head.headers["content-length"] == full.headers["content-length"]


def test_openapi_documents_every_array_type(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/v1/plans/{plan_id}/indices", "/v1/plans/{plan_id}/weights"):
        operation = spec["paths"][path]
        assert set(operation) == {"get", "head"}  # HEAD: its own operation, without a body
        assert operation["head"]["operationId"] != operation["get"]["operationId"]
        head_ok = operation["head"]["responses"]["200"]
        assert "content" not in head_ok
        assert {"X-Sampleplan-Dtype", "X-Sampleplan-Length"} <= set(head_ok["headers"])
        ok = operation["get"]["responses"]["200"]
        assert set(ok["content"]) == {"application/json", OCTET_STREAM, NPY}
        assert {"X-Sampleplan-Dtype", "X-Sampleplan-Length"} <= set(ok["headers"])
        assert "406" in operation["get"]["responses"]
    description = spec["info"]["description"]
    assert f"| {MAX_PAGE} |" in description and "SAMPLEPLAN_MAX_BODY_BYTES" in description


def test_page_over_max_page_is_422(client: TestClient) -> None:
    big = client.post("/v1/plans", json={"labels": LABELS, "num_samples": 3 * MAX_PAGE}).json()[
        "id"
    ]
    for accept in (None, OCTET_STREAM, NPY):
        response = get(client, f"/v1/plans/{big}/indices", accept)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert f"at most {MAX_PAGE}" in response.json()["detail"]
    page = get(client, f"/v1/plans/{big}/indices", OCTET_STREAM, offset=MAX_PAGE, limit=MAX_PAGE)
    assert page.status_code == 200 and page.headers["x-sampleplan-length"] == str(MAX_PAGE)


# -- the epoch cache ---------------------------------------------------------------------------


class CountingDraws:
    """Wraps ``PreparedPlan.draw_epoch`` to count calls (optionally slowed, to make races)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()
        original = PreparedPlan.draw_epoch
        counter = self

        def draw_epoch(plan: PreparedPlan, epoch: int) -> Any:
            with counter.lock:
                counter.calls.append(epoch)
            if delay:
                threading.Event().wait(delay)
            return original(plan, epoch)

        monkeypatch.setattr(PreparedPlan, "draw_epoch", draw_epoch)


def test_paging_through_a_cold_epoch_draws_it_once(
    client: TestClient, plan_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws = CountingDraws(monkeypatch)
    expected = expected_stream(10)
    pages = [
        np.frombuffer(
            get(
                client, f"/v1/plans/{plan_id}/indices", OCTET_STREAM, epoch=10, offset=o, limit=100
            ).content,
            "<i8",
        )
        for o in range(0, 1500, 100)
    ]
    assert np.concatenate(pages).tolist() == expected
    # Other ranks, the dataset space and JSON come from the same cached epoch.
    shard = get(
        client, f"/v1/plans/{plan_id}/indices", None, epoch=10, rank=1, world_size=4
    ).json()["indices"]
    assert shard == reference.distributed_shard(expected, 1, 4)
    assert draws.calls == [10]


def test_concurrent_requests_for_a_cold_epoch_draw_it_once(
    client: TestClient, plan_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws = CountingDraws(monkeypatch, delay=0.2)
    expected = expected_stream(11)
    results: list[bool] = []

    def fetch(offset: int) -> None:
        response = get(
            client, f"/v1/plans/{plan_id}/indices", None, epoch=11, offset=offset, limit=100
        )
        results.append(response.json()["indices"] == expected[offset : offset + 100])

    threads = [threading.Thread(target=fetch, args=(100 * i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 6
    assert draws.calls == [11]


def make_catalog(tmp_path: Path, **settings: Any) -> Catalog:
    from sampleplan.service.storage import PlanStore

    config = Settings(database_url=f"sqlite:///{tmp_path / 'c.sqlite3'}", **settings)
    return Catalog(PlanStore.open(config.database_url), config)


def test_epochs_are_evicted_by_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sampleplan.core.config import PlanConfig
    from sampleplan.core.labels import labels_from_list
    from sampleplan.core.streams import StreamRequest

    # 1000 draws are 8000 bytes: three epochs fit in 25000 bytes, a fourth evicts the oldest.
    catalog = make_catalog(tmp_path, epoch_cache_bytes=25_000)
    plan, _ = catalog.create_plan(
        PlanConfig(num_samples=1000), labels=labels_from_list([0, 1, 1, 2] * 10)
    )
    draws = CountingDraws(monkeypatch)
    for epoch in (0, 1, 2, 0, 3, 0, 1):
        # Whole epochs: a small first page would be drawn on its own, uncached.
        catalog.indices(plan, StreamRequest(epoch=epoch))
    assert draws.calls == [0, 1, 2, 3, 1]  # epoch 1 was the least recently used when 3 came
    stats = catalog.epochs.stats()
    assert (stats.entries, stats.bytes, stats.evictions) == (3, 24_000, 2)
    cached = catalog.epoch_stream(plan, 0)
    assert not cached.flags.writeable  # shared between requests: nobody may write to it


def test_a_zero_byte_cache_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sampleplan.core.config import PlanConfig
    from sampleplan.core.labels import labels_from_list
    from sampleplan.core.streams import StreamRequest

    catalog = make_catalog(tmp_path, epoch_cache_bytes=0)
    plan, _ = catalog.create_plan(PlanConfig(num_samples=50), labels=labels_from_list([0, 1, 1]))
    draws = CountingDraws(monkeypatch)
    for _ in range(3):
        catalog.indices(plan, StreamRequest())
    assert draws.calls == [0, 0, 0]


def test_cheap_pages_skip_the_cache_on_first_touch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NOTE [When an epoch is drawn whole]: a plan that draws pages cheaply gets its first
    # lone page of a cold epoch drawn on its own; the second request caches the epoch.
    from sampleplan.core.config import PlanConfig
    from sampleplan.core.labels import labels_from_list
    from sampleplan.core.streams import StreamRequest

    catalog = make_catalog(tmp_path)
    plan, _ = catalog.create_plan(
        PlanConfig(num_samples=400, seed=9), labels=labels_from_list([0, 1, 1, 2] * 25)
    )
    assert plan.prepared.draws_by_range
    draws = CountingDraws(monkeypatch)
    pages_drawn: list[StreamRequest] = []
    original = PreparedPlan.indices

    def indices(prepared: PreparedPlan, request: StreamRequest, epoch_stream: Any = None) -> Any:
        if epoch_stream is None:
            pages_drawn.append(request)
        return original(prepared, request, epoch_stream)

    monkeypatch.setattr(PreparedPlan, "indices", indices)
    expected = reference.weighted_stream(
        reference.inverse_frequency([0, 1, 1, 2] * 25), 400, True, 9 + 2
    )
    first = catalog.indices(plan, StreamRequest(epoch=2, offset=100, limit=50))
    assert first.tolist() == expected[100:150]
    assert len(pages_drawn) == 1  # drawn on its own, by range: no whole-epoch draw
    assert catalog.epochs.get((plan.id, 2)) is None
    second = catalog.indices(plan, StreamRequest(epoch=2, offset=150, limit=50))
    assert second.tolist() == expected[150:200]
    assert catalog.epochs.get((plan.id, 2)) is not None  # the second request cached the epoch
    third = catalog.indices(plan, StreamRequest(epoch=2, offset=200, limit=50))
    assert third.tolist() == expected[200:250]
    whole = catalog.indices(plan, StreamRequest(epoch=3))  # most of an epoch: always cached
    assert whole.tolist() == reference.weighted_stream(
        reference.inverse_frequency([0, 1, 1, 2] * 25), 400, True, 12
    )
    assert len(pages_drawn) == 1
    assert draws.calls == [2, 3]


# -- the body cap, message by message -----------------------------------------------------------
