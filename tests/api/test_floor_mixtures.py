"""Mixture pages of a cached epoch (NOTE [Mixture epochs drawn whole] in
service/catalog.py): cut from the epoch drawn once, equal to the pages drawn by position,
and answered at the floor byte for byte as the stack answers them.

As in tests/api/test_floor.py, each request goes as raw ASGI messages to an app with the
floor and to one without it (``fast_lane=False``), with the caller's ``X-Request-ID``, and
the two answers are compared whole; the access lines and the counts must agree too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sampleplan.core.mixtures import mixture_page
from sampleplan.core.streams import StreamRequest
from sampleplan.service.catalog import Catalog
from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from sampleplan.service.mixture_plans import MixturePlan
from tests.helpers.asgi import call_app, http_scope, whole_answer
from tests.helpers.floor import answered_at_floor
from tests.helpers.logs import timeless_lines
from tests.helpers.metrics import moved

EPOCH = 2
LENGTHS = {"web": 37, "code": 19, "math": 8}

#: One mixture of each mixing algorithm (hf-interleave's epochs differ in length).
MIXINGS = {
    "mixture-v1": ({"algorithm": "mixture-v1", "block": 8}, 70),
    "megatron-blend": ({"algorithm": "megatron-blend"}, 50),
    "hf-interleave": ({"algorithm": "hf-interleave", "stopping": "all_exhausted"}, None),
}
ORDERS = ["reshuffled", "sequential", {"shuffle_seed": 7}]


def mixture_body(ids: dict[str, str], algorithm: str) -> dict[str, Any]:
    mixing, num_samples = MIXINGS[algorithm]
    body: dict[str, Any] = {
        "sources": [
            {"name": name, "dataset_id": ids[name], "weight": w, "order": order}
            for (name, w, order) in zip(LENGTHS, (0.5, 0.3, 0.2), ORDERS, strict=True)
        ],
        "mixing": mixing,
        "seed": 13,
    }
    if num_samples is not None:
        body["num_samples"] = num_samples
    return body


class Pair:
    """Two apps, the floor's and the plain one, each with the same mixture plans (one per
    mixing algorithm), epoch EPOCH of each drawn and cached."""

    def __init__(self, tmp_path: Any, **settings: Any) -> None:
        self.clients = [
            TestClient(
                create_app(
                    Settings(database_url=f"sqlite:///{tmp_path / f'{name}.sqlite3'}", **settings),
                    fast_lane=fast,
                )
            )
            for name, fast in (("floor", True), ("plain", False))
        ]
        for client in self.clients:
            client.__enter__()
        self.plans: dict[str, str] = {}
        for algorithm in MIXINGS:
            ids = set()
            for client in self.clients:
                datasets = {
                    name: client.post(
                        "/v1/datasets", json={"labels": [i % 3 for i in range(n)]}
                    ).json()["id"]
                    for name, n in LENGTHS.items()
                }
                created = client.post("/v1/plans", json=mixture_body(datasets, algorithm))
                assert created.status_code in (200, 201), created.text
                plan_id = created.json()["id"]
                ids.add(plan_id)
                # The whole epoch at once: drawn whole and cached.
                whole = client.get(f"/v1/plans/{plan_id}/indices?epoch={EPOCH}")
                assert whole.status_code == 200
            (self.plans[algorithm],) = ids

    def close(self) -> None:
        for client in self.clients:
            client.__exit__(None, None, None)

    def catalog(self, index: int = 0) -> Catalog:
        catalog: Catalog = self.clients[index].app.state.catalog  # type: ignore[attr-defined]
        return catalog

    def raw(self, method: str, target: str, headers: list[tuple[bytes, bytes]]) -> list[Any]:
        """Each app's ASGI messages for one request (run on its own portal's loop)."""
        answers = []
        for client in self.clients:
            messages: list[dict[str, Any]] = []
            assert client.portal is not None
            client.portal.call(call_app, client.app, http_scope(method, target, headers), messages)
            answers.append(messages)
        return answers


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    pair = Pair(tmp_path_factory.mktemp("floor-mixtures"), max_page=200, log_level="info")
    yield pair
    pair.close()


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests the floor answered."""
    return answered_at_floor(monkeypatch)


QUERIES = [
    f"epoch={EPOCH}&limit=60",
    f"epoch={EPOCH}&offset=5&limit=7",
    f"limit=9&offset=40&epoch={EPOCH}",
    f"epoch={EPOCH}&offset=45&limit=30",
    f"epoch={EPOCH}&offset=64&limit=8",
    f"epoch={EPOCH}&offset=200&limit=8",
    f"epoch={EPOCH}&offset=10&limit=0",
    f"epoch={EPOCH}&rank=1&world_size=3&offset=2&limit=9",
    f"epoch={EPOCH}&world_size=2&rank=1&offset=3&limit=4&start=7&drop_last=true",
    f"epoch={EPOCH}&pad=false&world_size=7&rank=6&space=dataset",
    f"epoch={EPOCH}&world_size=5&rank=4&offset=10",
    f"epoch={EPOCH}&offset=4&limit=6&start=30",
    f"epoch={EPOCH}&offset=4&limit=6&start=30&space=dataset",
    f"epoch={EPOCH}&start=51&pad=false&world_size=2&rank=1",
    f"epoch={EPOCH}&start=500&limit=3",
    f"epoch={EPOCH}&rank=3&world_size=3",
    f"epoch={EPOCH}&limit=201",
    f"epoch={EPOCH}",
    f"epoch={EPOCH}&offset=-1",
    f"epoch={EPOCH}&offset=99999999999999999999999",
    f"epoch={EPOCH}&offset=999999999999999999&limit=2",
    "epoch=9&limit=4",  # a cold epoch: not at hand, down the stack
]

ACCEPTS = [None, b"application/octet-stream", b"application/x-npy", b"text/csv", b"*/*"]


@pytest.mark.parametrize("algorithm", list(MIXINGS))
@pytest.mark.parametrize("query", QUERIES)
def test_the_floor_answers_mixture_pages_byte_for_byte_as_the_stack(
    pair: Pair, algorithm: str, query: str
) -> None:
    target = f"/v1/plans/{pair.plans[algorithm]}/indices?{query}"
    for accept in ACCEPTS:
        headers = [(b"x-request-id", b"floor-mixture-1")]
        if accept is not None:
            headers.append((b"accept", accept))
        for method in ("GET", "HEAD"):
            ours, theirs = (whole_answer(m) for m in pair.raw(method, target, headers))
            assert ours == theirs, (method, accept)


@pytest.mark.parametrize("algorithm", list(MIXINGS))
def test_a_cached_mixture_epoch_is_answered_at_the_floor_and_a_cold_one_by_the_stack(
    pair: Pair, algorithm: str, answered: list[str]
) -> None:
    floor, _ = pair.clients
    plan_id = pair.plans[algorithm]
    path = f"/v1/plans/{plan_id}/indices"
    plan = pair.catalog().get_any_plan(plan_id)
    assert isinstance(plan, MixturePlan)
    length = plan.drawer.num_samples_at(EPOCH)
    stream = plan.drawer.draw_range(EPOCH, 0, length).tolist()
    page = floor.get(path, params={"epoch": EPOCH, "offset": 10, "limit": 20})
    assert page.json()["indices"] == stream[10:30]
    assert page.headers["x-sampleplan-stream-length"] == str(length)
    binary = floor.get(
        path,
        params={"epoch": EPOCH, "offset": 10, "limit": 20},
        headers={"Accept": "application/octet-stream"},
    )
    assert np.frombuffer(binary.content, dtype="<i8").tolist() == stream[10:30]
    ranked = floor.get(path, params={"epoch": EPOCH, "rank": 1, "world_size": 2, "limit": 5})
    assert ranked.json()["indices"] == stream[1:10:2]
    assert answered == [path] * 3, "the floor did not answer pages at hand"
    # A cold epoch is not at hand: the stack answers it, and a lone small page of it is
    # drawn alone (NOTE [When an epoch is drawn whole]), the epoch left uncached.
    cold = 5 + len(answered)
    key = (plan_id, cold)
    assert floor.get(path, params={"epoch": cold, "limit": 3}).status_code == 200
    assert len(answered) == 3 and key not in pair.catalog().epochs
    # A second request for it draws it whole; then its pages are at hand.
    assert floor.get(path, params={"epoch": cold, "offset": 3, "limit": 3}).status_code == 200
    assert key in pair.catalog().epochs and len(answered) == 3
    assert floor.get(path, params={"epoch": cold, "offset": 6, "limit": 3}).status_code == 200
    assert len(answered) == 4


def test_floor_answers_are_logged_and_counted_as_the_stack_counts_them(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"/v1/plans/{pair.plans['mixture-v1']}/indices?epoch={EPOCH}&offset=3&limit=4"
    before = [c.get("/metrics").text for c in pair.clients]
    capsys.readouterr()
    pair.raw("GET", target, [(b"x-request-id", b"floor-mixture-log-1")])
    lines = timeless_lines(capsys.readouterr().err, '"floor-mixture-log-1"')
    assert len(lines) == 2
    assert lines[0] == lines[1]
    assert lines[0]["route"] == "/v1/plans/{plan_id}/indices" and lines[0]["status"] == 200
    pattern = (
        r'^sampleplan_(?:http_requests_total\{method="GET",route="/v1/plans/\{plan_id\}/indices",'
        r'status="200"\}|indices_served_total\{algorithm="mixture-v1"\}'
        r'|draw_duration_seconds_count\{algorithm="mixture-v1"\}'
        r'|epoch_draws_total\{algorithm="mixture-v1"\}) (\S+)$'
    )
    for client, earlier in zip(pair.clients, before, strict=True):
        # requests, pages timed, indices, epochs drawn (none: the epoch was cached)
        assert moved(earlier, client.get("/metrics").text, pattern) == [1.0, 4.0, 1.0, 0.0]


# -- pages cut from the cached epoch ------------------------------------------------------


def _requests(rng: np.random.Generator, length: int, count: int) -> Iterator[StreamRequest]:
    for _ in range(count):
        world_size = int(rng.choice([1, 1, 2, 3, 4, 7]))
        limit = None if rng.random() < 0.2 else int(rng.integers(0, length + 3))
        yield StreamRequest(
            epoch=0,  # replaced by the caller
            rank=int(rng.integers(0, world_size)),
            world_size=world_size,
            offset=int(rng.integers(0, length + 5)),
            limit=limit,
            space="dataset" if rng.random() < 0.3 else "population",
            start=int(rng.integers(0, length + 1)) if rng.random() < 0.4 else 0,
            pad=bool(rng.random() < 0.7),
            drop_last=bool(rng.random() < 0.3),
        )


@pytest.mark.parametrize("algorithm", list(MIXINGS))
def test_pages_cut_from_a_cached_mixture_epoch_are_the_pages_drawn_by_position(
    pair: Pair, algorithm: str
) -> None:
    catalog = pair.catalog(1)
    plan = catalog.get_any_plan(pair.plans[algorithm])
    assert isinstance(plan, MixturePlan)
    rng = np.random.default_rng(list(algorithm.encode()))
    lengths = set()
    for epoch in range(4):
        length = plan.drawer.num_samples_at(epoch)
        lengths.add(length)
        whole = plan.drawer.draw_range(epoch, 0, length)
        assert plan.drawer.draw_epoch(epoch, chunk=7).tolist() == whole.tolist()
        catalog.mixture_indices(plan, StreamRequest(epoch=epoch))  # the whole epoch: cached
        cached = catalog.epochs.peek((plan.id, epoch))
        assert cached is not None and cached.tolist() == whole.tolist()
        for request in _requests(rng, length, 60):
            request = StreamRequest(**{**request.keywords(), "epoch": epoch})
            expected = mixture_page(plan.drawer, request)
            assert catalog.mixture_indices(plan, request).tolist() == expected.tolist()
            at_hand = catalog.page_at_hand(plan.id, request)
            if at_hand is not None:
                assert at_hand[1].tolist() == expected.tolist() and at_hand[2] == length
    if algorithm == "hf-interleave":
        assert len(lengths) > 1, "every epoch of the same length: pick another seed"


def test_an_epoch_the_cache_cannot_keep_is_drawn_by_position(tmp_path: Any) -> None:
    # Epochs of 50 values or more are 400 bytes or more: a budget of 300 keeps none, and
    # every page is drawn alone.
    pair = Pair(tmp_path, epoch_cache_bytes=300)
    try:
        for algorithm in MIXINGS:
            plan_id = pair.plans[algorithm]
            for client in pair.clients:
                for offset in (0, 5, 10):
                    response = client.get(
                        f"/v1/plans/{plan_id}/indices",
                        params={"epoch": EPOCH, "offset": offset, "limit": 5},
                    )
                    assert response.status_code == 200
            assert (plan_id, EPOCH) not in pair.catalog().epochs
        metrics = pair.clients[0].get("/metrics").text
        assert "sampleplan_epoch_draws_total{algorithm=" not in metrics
    finally:
        pair.close()


def test_a_mixture_of_plan_sources_is_cut_from_its_cached_epoch_as_drawn(pair: Pair) -> None:
    """A plan source's stream is its plan's epochs concatenated (a ``torch`` plan without
    replacement draws its epochs whole): the cached mixture epoch still cuts the pages
    ``mixture_page`` draws."""
    _, plain = pair.clients
    catalog = pair.catalog(1)
    labels = plain.post("/v1/datasets", json={"labels": [i % 4 for i in range(30)]}).json()["id"]
    sources = []
    for name, replacement in (("drawn", True), ("dealt", False)):
        body = {"dataset_id": labels, "seed": 5, "replacement": replacement}
        created = plain.post("/v1/plans", json=body)
        assert created.status_code in (200, 201), created.text
        sources.append({"name": name, "plan_id": created.json()["id"], "weight": 1.0})
    body = {"sources": sources, "mixing": {"algorithm": "mixture-v1", "block": 4}, "seed": 2}
    created = plain.post("/v1/plans", json=body)
    assert created.status_code in (200, 201), created.text
    plan = catalog.get_any_plan(created.json()["id"])
    assert isinstance(plan, MixturePlan)
    rng = np.random.default_rng(3)
    for epoch in (0, 3):
        length = plan.drawer.num_samples_at(epoch)
        catalog.mixture_indices(plan, StreamRequest(epoch=epoch))
        assert (plan.id, epoch) in catalog.epochs
        for request in _requests(rng, length, 40):
            request = StreamRequest(**{**request.keywords(), "epoch": epoch})
            expected = mixture_page(plan.drawer, request).tolist()
            assert catalog.mixture_indices(plan, request).tolist() == expected
