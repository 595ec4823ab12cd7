"""Batch pages at the floor (NOTE [Serving at the floor] in service/api/floor.py, NOTE [An
epoch of batches drawn whole] in service/catalog.py): pages of a cached epoch of batches
answered before the middleware stack, byte for byte as the stack answers them, and every
page cut from a cached epoch the page drawn on its own.

The apps are test_floor.py's :class:`Pair`: each request goes, as raw ASGI messages, to
an app with the floor and to one without it (``fast_lane=False``), with one
``X-Request-ID``, and the two answers are compared whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest

from sampleplan.core.batches import batch_page, batching_from_json
from sampleplan.core.config import PlanConfig
from sampleplan.core.labelsets import labels_or_label_sets
from sampleplan.core.splitting import Split
from sampleplan.core.streams import StreamRequest
from sampleplan.service.catalog import build_plan
from sampleplan.service.epoch_cache import EpochTexts
from tests.api.test_floor import EPOCH, Pair, _whole
from tests.helpers.floor import answered_at_floor
from tests.helpers.logs import timeless_lines
from tests.helpers.metrics import moved

#: With a split, positions and dataset indices differ. Plans of 21 batches of 4, ragged
#: against most world sizes; 15 batches are the fixture's max_page.
LABELS = ["cat"] * 23 + ["dog"] * 11 + ["emu"] * 9 + ["gnu"] * 5
M_PER_CLASS = {"kind": "m_per_class", "m": 2, "batch_size": 4}
QUOTA = {"kind": "class_quota", "quota": {"cat": 2, "dog": 1, "gnu": 1}}


class BatchPair(Pair):
    """:class:`Pair` with batch plans whose epoch EPOCH of batches is cached."""

    def batch_plan(self, body: dict[str, Any], *, warm: bool = True) -> str:
        """The id of a batch plan made in both apps, its epoch EPOCH of batches drawn and
        cached (with ``warm``)."""
        ids = set()
        for client in self.clients:
            created = client.post("/v1/plans", json=body)
            assert created.status_code in (200, 201), created.text
            plan_id = created.json()["id"]
            ids.add(plan_id)
            if warm:
                # A lone page of a cold epoch is drawn alone; the next page draws the
                # epoch whole, and the cache keeps it.
                for _ in range(2):
                    page = client.get(f"/v1/plans/{plan_id}/batches?epoch={EPOCH}&limit=1")
                    assert page.status_code == 200, page.text
                catalog = client.app.state.catalog  # type: ignore[attr-defined]
                assert ("batches", plan_id, EPOCH) in catalog.epochs
        (plan_id,) = ids
        return plan_id


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchPair]:
    pair = BatchPair(tmp_path_factory.mktemp("floor-batches"), max_page=60, log_level="info")
    pair.m_per_class = pair.batch_plan(  # type: ignore[attr-defined]
        {"labels": LABELS, "seed": 5, "batching": M_PER_CLASS, "num_batches": 21}
    )
    pair.split = pair.batch_plan(  # type: ignore[attr-defined]
        {
            "labels": LABELS,
            "seed": 6,
            "batching": QUOTA,
            "split": {"fractions": [0.5, 0.5]},
            "num_batches": 11,
            "definitions": {"batches": "batches-v2"},
        }
    )
    yield pair
    pair.close()


QUERIES = [
    f"epoch={EPOCH}",
    f"epoch={EPOCH}&offset=3&limit=5",
    f"limit=4&offset=9&epoch={EPOCH}",
    f"epoch={EPOCH}&offset=12&limit=9",
    f"epoch={EPOCH}&offset=19&limit=5",
    f"epoch={EPOCH}&offset=21&limit=2",
    f"epoch={EPOCH}&offset=400&limit=2",
    f"epoch={EPOCH}&offset=2&limit=0",
    f"epoch={EPOCH}&limit=15",  # 60 values: max_page exactly
    f"epoch={EPOCH}&limit=16",  # 64 values: over max_page, a 422
    f"epoch={EPOCH}&rank=1&world_size=2",
    f"epoch={EPOCH}&rank=2&world_size=3&offset=1&limit=4",
    f"epoch={EPOCH}&rank=4&world_size=5&offset=2",
    f"epoch={EPOCH}&rank=2&world_size=4&offset=5",
    f"epoch={EPOCH}&rank=29&world_size=30",  # every rank one batch, some repeated
    f"epoch={EPOCH}&rank=1&world_size=50&offset=1",
    f"epoch={EPOCH}&world_size=2&rank=1&space=dataset&limit=3",
    f"epoch={EPOCH}&space=dataset&offset=1&limit=6",
    f"epoch={EPOCH}&space=population&offset=1&limit=6",
    f"epoch={EPOCH}&rank=0&world_size=1&limit=2",
    f"epoch={EPOCH}&rank=1&world_size=1",
    f"epoch={EPOCH}&rank=3&world_size=3",
    f"epoch={EPOCH}&offset=-1",
    f"epoch={EPOCH}&limit=abc",
    f"epoch={EPOCH}&limit=",
    f"epoch={EPOCH}&limit=2&limit=3",
    f"epoch={EPOCH}&offset=%32&limit=2",
    f"epoch={EPOCH}&start=2",
    f"epoch={EPOCH}&space=Dataset",
    f"epoch={EPOCH}&offset=99999999999999999999999&limit=1",
    "epoch=9&limit=2",  # a cold epoch: drawn by the stack
    "epoch=4294967296",
    "",
]

ACCEPTS = [None, b"application/octet-stream", b"application/x-npy", b"text/csv", b"*/*"]


def _compare(pair: Pair, target: str, accept: bytes | None, request_id: bytes) -> None:
    headers = [(b"x-request-id", request_id)]
    if accept is not None:
        headers.append((b"accept", accept))
    for method in ("GET", "HEAD"):
        ours, theirs = (_whole(m) for m in pair.raw(method, target, headers))
        assert ours == theirs, (method, target, accept)


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("accept", ACCEPTS)
def test_the_floor_answers_batch_pages_byte_for_byte_as_the_stack(
    pair: Any, query: str, accept: bytes | None
) -> None:
    _compare(pair, f"/v1/plans/{pair.m_per_class}/batches?{query}", accept, b"batches-1")


@pytest.mark.parametrize(
    "query",
    [
        f"epoch={EPOCH}&offset=1&limit=5",
        f"epoch={EPOCH}&offset=1&limit=5&space=dataset",
        f"epoch={EPOCH}&rank=2&world_size=3&space=dataset",
        f"epoch={EPOCH}&rank=1&world_size=4&offset=1",
    ],
)
@pytest.mark.parametrize("accept", [None, b"application/octet-stream", b"application/x-npy"])
def test_a_split_plans_batches_in_either_space_are_the_stacks(
    pair: Any, query: str, accept: bytes | None
) -> None:
    _compare(pair, f"/v1/plans/{pair.split}/batches?{query}", accept, b"batches-split-1")


@pytest.mark.parametrize(
    "target",
    [
        "/v1/plans/{plain}/batches?epoch=3&limit=2",  # not a batch plan: 422
        "/v1/plans/{unknown}/batches?epoch=3&limit=2",  # 404
        "/v1/plans/{plan}/batches/summary?epoch=3",
    ],
)
def test_what_the_floor_leaves_is_answered_as_before(pair: Any, target: str) -> None:
    target = target.format(plain=pair.plan_id, unknown="f" * 64, plan=pair.m_per_class)
    _compare(pair, target, None, b"batches-left-1")


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The targets the floor answers from now on."""
    return answered_at_floor(
        monkeypatch, lambda scope: f"{scope['path']}?{scope['query_string'].decode()}"
    )


def test_the_floor_answers_small_pages_of_cached_epochs_only(
    pair: Any, answered: list[str]
) -> None:
    floor, _ = pair.clients
    path = f"/v1/plans/{pair.m_per_class}/batches"
    at_hand = [
        f"epoch={EPOCH}&offset=3&limit=5",
        f"epoch={EPOCH}&rank=2&world_size=3&space=dataset",
        f"epoch={EPOCH}&offset=20&limit=0",
    ]
    elsewhere = [
        "epoch=8&limit=2",  # a cold epoch
        f"epoch={EPOCH}&limit=16",  # over max_page: the route's 422
        f"epoch={EPOCH}&rank=1&world_size=1",  # the route's 422
    ]
    for query in at_hand + elsewhere:
        floor.get(f"{path}?{query}")
        floor.head(f"{path}?{query}", headers={"Accept": "application/octet-stream"})
    assert answered == [f"{path}?{query}" for query in at_hand for _ in range(2)]
    split = f"/v1/plans/{pair.split}/batches?epoch={EPOCH}&offset=2&limit=3&space=dataset"
    page = floor.get(split, headers={"Accept": "application/x-npy"})
    assert answered[-1] == split and page.headers["x-sampleplan-shape"] == "3,4"


def test_floor_answers_are_logged_and_counted_as_the_stack_counts_them(
    pair: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"/v1/plans/{pair.m_per_class}/batches?epoch={EPOCH}&offset=3&limit=4"
    for method in ("GET", "HEAD"):  # both counts exist before, whatever ran first
        pair.raw(method, target, [])
    before = [c.get("/metrics").text for c in pair.clients]
    capsys.readouterr()
    pair.raw("GET", target, [(b"x-request-id", b"batches-log-1")])
    pair.raw("HEAD", target, [(b"x-request-id", b"batches-log-1")])
    lines = timeless_lines(capsys.readouterr().err, '"batches-log-1"')
    assert len(lines) == 4
    assert lines[0] == lines[1] and lines[2] == lines[3] and lines[0] != lines[2]
    assert lines[0]["route"] == "/v1/plans/{plan_id}/batches" and lines[0]["status"] == 200
    pattern = (
        r'^sampleplan_http_requests_total\{method="(?:GET|HEAD)",'
        r'route="/v1/plans/\{plan_id\}/batches",status="200"\} (\S+)$'
    )
    for client, earlier in zip(pair.clients, before, strict=True):
        assert moved(earlier, client.get("/metrics").text, pattern) == [1.0, 1.0]


def _draws(client: Any) -> float:
    text = client.get("/metrics").text
    found = re.findall(r'^sampleplan_epoch_draws_total\{algorithm="batches"\} (\S+)$', text, re.M)
    return float(found[0]) if found else 0.0


def test_a_lone_page_of_a_cold_epoch_is_drawn_alone_and_the_next_draws_it_whole(
    pair: Any,
) -> None:
    for client in pair.clients:
        catalog = client.app.state.catalog
        key = ("batches", pair.m_per_class, 7)
        path = f"/v1/plans/{pair.m_per_class}/batches"
        draws = _draws(client)
        first = client.get(path, params={"epoch": 7, "offset": 2, "limit": 3})
        assert key not in catalog.epochs and _draws(client) == draws
        second = client.get(path, params={"epoch": 7, "offset": 5, "limit": 3})
        assert key in catalog.epochs and _draws(client) == draws + 1
        whole = client.get(path, params={"epoch": 7, "limit": 15}).json()["batches"]
        assert first.json()["batches"] == whole[2:5] and second.json()["batches"] == whole[5:8]
        assert _draws(client) == draws + 1


@pytest.mark.parametrize(
    "settings",
    [{"epoch_cache_bytes": 0}, {"epoch_cache_bytes": 8 * 4 * 13 - 1}, {"max_num_samples": 51}],
)
def test_an_epoch_of_batches_that_would_not_fit_is_never_drawn_whole(
    tmp_path: Any, settings: dict[str, Any]
) -> None:
    # 13 batches of 4: 52 values, 416 bytes.
    pair = BatchPair(tmp_path, **settings)
    try:
        body = {
            "labels": LABELS,
            "seed": 5,
            "batching": M_PER_CLASS,
            "num_batches": 13,
            "num_samples": 10,
        }
        plan_id = pair.batch_plan(body, warm=False)
        for client in pair.clients:
            path = f"/v1/plans/{plan_id}/batches"
            pages = [client.get(path, params={"epoch": EPOCH}) for _ in range(2)]
            assert pages[0].content == pages[1].content
            assert ("batches", plan_id, EPOCH) not in client.app.state.catalog.epochs  # type: ignore[attr-defined]
            assert _draws(client) == 0
        _compare(pair, f"/v1/plans/{plan_id}/batches?epoch={EPOCH}&offset=2&limit=3", None, b"b")
    finally:
        pair.close()


# -- pages cut from an epoch's batches are the pages drawn ------------------------------------


@pytest.mark.parametrize("definition", ["batches-v1", "batches-v2"])
@pytest.mark.parametrize(
    "batching",
    [
        {"kind": "m_per_class", "m": 2, "batch_size": 4},
        {"kind": "m_per_class", "m": 3, "batch_size": 6},
        {"kind": "class_quota", "quota": {"cat": 3, "emu": 1}},
    ],
)
def test_a_page_cut_from_the_epochs_batches_is_the_page_drawn(
    definition: str, batching: dict[str, Any]
) -> None:
    rng = np.random.default_rng(len(definition) + len(batching))
    labels = labels_or_label_sets(
        [["cat", "dog", "emu", "gnu", "owl"][i] for i in rng.integers(0, 5, 90)]
    )
    for num_batches, split in ((None, None), (17, (0.6, 0.4)), (5, None)):
        config = PlanConfig(
            seed=int(rng.integers(0, 2**32)),
            batching=batching_from_json(batching),
            num_batches=num_batches,
            split=None if split is None else Split(seed=3, fractions=split),
            definitions={"batches": definition},
        )
        prepared = build_plan(labels, config).prepared
        table = prepared.batch_table
        assert table is not None
        for epoch in (0, 1, 2**32 - 1):
            matrix = prepared.draw_batch_epoch(epoch)
            assert matrix.shape == (table.num_batches, table.batch_size)
            for world_size in (1, 2, 3, 4, 7, table.num_batches + 3):
                for rank in {0, world_size // 2, world_size - 1}:
                    for offset, limit in ((0, None), (1, 2), (2, 0), (3, 99), (50, 3)):
                        for space in ("population", "dataset"):
                            request = StreamRequest(
                                epoch=epoch,
                                rank=rank,
                                world_size=world_size,
                                offset=offset,
                                limit=limit,
                                space=space,  # type: ignore[arg-type]
                            )
                            drawn = batch_page(table, config.seed, request, prepared.population)
                            cut = prepared.batches(request, epoch_batches=matrix)
                            assert cut.dtype == drawn.dtype and cut.shape == drawn.shape
                            np.testing.assert_array_equal(cut, drawn)


def test_an_epochs_rows_written_once_are_the_rows_written_alone() -> None:
    matrix = np.arange(15, dtype=np.int64).reshape(5, 3)[::-1].copy()
    matrix.flags.writeable = False
    population = np.arange(-(10**12), -(10**12) + 15 * 10**6, 10**6, dtype=np.int64)
    texts = EpochTexts(1 << 20)
    for space, values in (("population", matrix), ("dataset", population[matrix])):
        for first, stop in ((0, 5), (1, 3), (4, 5), (2, 2), (5, 5), (0, 1)):
            text = texts.numbers(("m", space, False), matrix, space, population, first, stop)
            assert text == orjson.dumps(values[first:stop], option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
            data = texts.numbers(("m", space, True), matrix, space, population, first, stop, True)
            assert data == values[first:stop].astype("<i8").tobytes()
