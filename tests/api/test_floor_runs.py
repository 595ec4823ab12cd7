"""Run pages at the floor (NOTE [Run pages at the floor] in service/run_catalog.py, NOTE
[The runs' generation] in service/storage/generation.py).

A run's page of a cached frozen epoch is answered from memory, byte for byte as the stack
answers it, for as long as no run of the database was deleted and no epochs dropped since
the run was last read; a deletion or a drop by another process of the same SQLite file
(here: another app on it) sends the next page to the route, which answers 404 or 410.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from torch.utils.data import WeightedRandomSampler

from sampleplan.service.config import Settings
from sampleplan.service.main import create_app
from sampleplan.service.storage import generation as generation_module
from sampleplan.service.storage.generation import RunGeneration
from tests.api.test_floor import _call, _whole
from tests.helpers.asgi import http_scope
from tests.helpers.floor import answered_at_floor

LABELS = [0] * 40 + [1] * 7 + [2] * 3
SEED = 5
RUN = "floor-run.1"
SET = {
    "epoch": 0,
    "rank": 0,
    "step": 0,
    "op": "set",
    "indices": [0, 41, 48],
    "values": [9.0, 0.5, 4.0],
}


def _raw(client: TestClient, method: str, target: str, headers: list[tuple[bytes, bytes]]) -> Any:
    messages: list[dict[str, Any]] = []
    assert client.portal is not None
    client.portal.call(_call, client.app, http_scope(method, target, headers), messages)
    return _whole(messages)


def _make_run(client: TestClient, run_id: str = RUN, update: dict[str, Any] = SET) -> str:
    plan = client.post("/v1/plans", json={"labels": LABELS, "seed": SEED})
    assert plan.status_code in (200, 201), plan.text
    plan_id: str = plan.json()["id"]
    assert client.put(f"/v1/runs/{run_id}", json={"plan_id": plan_id}).status_code in (200, 201)
    assert client.post(f"/v1/runs/{run_id}/updates", json=update).status_code == 202
    # Epoch 1 read whole: frozen with the update, drawn and cached.
    assert client.get(f"/v1/runs/{run_id}/indices?epoch=1").status_code == 200
    return plan_id


class Reads:
    """Counts an app's reads of runs from the store."""

    def __init__(self, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
        store = client.app.state.runs.store  # type: ignore[attr-defined]
        self.count = 0
        original = store.get_run

        def get_run(run_id: str) -> Any:
            self.count += 1
            return original(run_id)

        monkeypatch.setattr(store, "get_run", get_run)


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[TestClient]]:
    """An app with the floor and one without it, on databases of their own, each with the
    same run, its epoch 1 cached."""
    folder = tmp_path_factory.mktemp("floor-runs")
    clients = [
        TestClient(
            create_app(
                Settings(database_url=f"sqlite:///{folder / f'{name}.sqlite3'}", max_page=60),
                fast_lane=fast,
            )
        )
        for name, fast in (("floor", True), ("plain", False))
    ]
    for client in clients:
        client.__enter__()
        _make_run(client)
    yield clients
    for client in clients:
        client.__exit__(None, None, None)


QUERIES = [
    "epoch=1",
    "epoch=1&offset=5&limit=7",
    "limit=9&offset=40&epoch=1",
    "epoch=1&rank=1&world_size=3&offset=2&limit=9",
    "epoch=1&world_size=2&rank=1&offset=3&limit=4&start=7&drop_last=true",
    "epoch=1&pad=false&world_size=7&rank=6&space=dataset",
    "epoch=1&offset=50&limit=0",
    "epoch=1&offset=70&limit=5",
    "epoch=1&limit=61",
    "epoch=1&start=51",
    "epoch=1&rank=3&world_size=3",
    "epoch=1&offset=%35&limit=7",
    "epoch=1&offset=3&limit=4&run=x",
    "epoch=0&limit=4",  # frozen: drawn by the route, then cached
    "epoch=2&limit=4",  # frozen by its first reading, then cached
    "epoch=4294967296",
]
ACCEPTS = [None, b"application/octet-stream", b"application/x-npy", b"text/csv", b"*/*"]
#: The queries of QUERIES the route refuses (422), which the floor leaves to it.
REFUSED = {"epoch=1&start=51", "epoch=1&rank=3&world_size=3", "epoch=4294967296"}
REFUSED.add("epoch=1&offset=3&limit=4&run=x")
#: Epochs the route draws first, then caches: at hand once cached (test order decides).
LATER = {"epoch=0&limit=4", "epoch=2&limit=4"}


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("accept", ACCEPTS)
def test_run_pages_at_the_floor_are_the_stacks_byte_for_byte(
    apps: list[TestClient], query: str, accept: bytes | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = [(b"x-request-id", b"floor-run-compare")]
    if accept is not None:
        headers.append((b"accept", accept))
    answered = answered_at_floor(monkeypatch, lambda scope: scope["method"])
    for method in ("GET", "HEAD"):
        ours, theirs = (_raw(c, method, f"/v1/runs/{RUN}/indices?{query}", headers) for c in apps)
        assert ours == theirs
    # The pages at hand came from the floor; refusals (a 406, a 422) from the route.
    if query not in LATER:
        at_hand = query not in REFUSED and accept != b"text/csv"
        assert answered == (["GET", "HEAD"] if at_hand else []), (query, accept)


@pytest.mark.parametrize("run_id", ["no-such-run", "bad%20id", "x" * 129])
def test_unknown_and_invalid_run_ids_are_the_stacks(apps: list[TestClient], run_id: str) -> None:
    headers = [(b"x-request-id", b"floor-run-unknown")]
    ours, theirs = (_raw(c, "GET", f"/v1/runs/{run_id}/indices?epoch=1", headers) for c in apps)
    assert ours == theirs and ours[0] in (404, 422)


def test_a_run_page_at_the_floor_reads_nothing_and_is_the_samplers_stream(
    apps: list[TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    floor = apps[0]
    reads = Reads(floor, monkeypatch)
    page = floor.get(f"/v1/runs/{RUN}/indices", params={"epoch": 1, "offset": 10, "limit": 20})
    binary = floor.get(
        f"/v1/runs/{RUN}/indices",
        params={"epoch": 1, "offset": 10, "limit": 20},
        headers={"Accept": "application/octet-stream"},
    )
    assert reads.count == 0, "a cached run page read the store"
    # The oracle: torch's sampler on the run's weights of epoch 1 (the plan's, updated).
    weights = floor.get(f"/v1/runs/{RUN}/weights", params={"epoch": 1}).json()["weights"]
    counts = np.bincount(LABELS)
    expected = np.array([1.0 / counts[label] for label in LABELS])
    expected[SET["indices"]] = SET["values"]
    assert weights == expected.tolist()
    generator = torch.Generator().manual_seed(SEED + 1)
    sampler = WeightedRandomSampler(
        torch.tensor(weights, dtype=torch.float64), len(LABELS), generator=generator
    )
    stream = list(sampler)
    assert page.json()["indices"] == stream[10:30]
    assert np.frombuffer(binary.content, dtype="<i8").tolist() == stream[10:30]


def _shared_pair(tmp_path: Any, **settings: Any) -> tuple[TestClient, TestClient]:
    """Two apps on one SQLite file, as two processes (workers, replicas) of it are."""
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    first, second = (TestClient(create_app(Settings(database_url=url, **settings))) for _ in "ab")
    first.__enter__()
    second.__enter__()
    return first, second


def test_a_run_deleted_by_another_process_is_a_404_at_once_and_made_again_is_another(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _shared_pair(tmp_path)
    try:
        plan_id = _make_run(first)
        page = f"/v1/runs/{RUN}/indices?epoch=1&limit=10"
        reads = Reads(first, monkeypatch)
        before = first.get(page)
        assert before.status_code == 200 and reads.count == 0
        assert second.delete(f"/v1/runs/{RUN}").status_code == 204
        gone = first.get(page)
        assert gone.status_code == 404 and reads.count == 1
        # Made again, with another update: another run, whose epoch 1 is its own.
        assert second.put(f"/v1/runs/{RUN}", json={"plan_id": plan_id}).status_code == 201
        other = {**SET, "values": [0.0, 50.0, 0.0]}
        assert second.post(f"/v1/runs/{RUN}/updates", json=other).status_code == 202
        again = first.get(page)
        assert again.status_code == 200 and again.json() == second.get(page).json()
        assert again.json()["indices"] != before.json()["indices"]
        # A lone first page of a cold epoch is drawn alone; the next draws it whole
        # (NOTE [When an epoch is drawn whole]); from then on, served from memory.
        assert first.get(page).json() == again.json()
        read = reads.count
        assert first.get(page).json() == again.json()
        assert reads.count == read
    finally:
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)


def test_epochs_dropped_by_another_process_are_a_410_at_once(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _shared_pair(tmp_path, run_keep_epochs=1)
    try:
        _make_run(first)
        page = f"/v1/runs/{RUN}/indices?epoch=1&limit=10"
        assert first.get(page).status_code == 200
        reads = Reads(first, monkeypatch)
        for epoch in (1, 2, 3):  # each epoch's update, then the next epoch frozen
            update = {**SET, "epoch": epoch}
            assert second.post(f"/v1/runs/{RUN}/updates", json=update).status_code == 202
            assert second.get(f"/v1/runs/{RUN}/indices?epoch={epoch + 1}").status_code == 200
        assert second.get(page).status_code == 410
        assert first.get(page).status_code == 410
        assert reads.count == 1
    finally:
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)


def test_on_postgresql_every_run_page_reads_the_run(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its other replicas share no memory with this one: no generation to trust.
    with TestClient(create_app(Settings(database_url=postgres_url))) as client:
        assert client.app.state.runs.store.generation is None  # type: ignore[attr-defined]
        run_id = "floor-run-pg"
        client.delete(f"/v1/runs/{run_id}")
        _make_run(client, run_id)
        reads = Reads(client, monkeypatch)
        for offset in (0, 10):
            page = client.get(f"/v1/runs/{run_id}/indices?epoch=1&limit=10&offset={offset}")
            assert page.status_code == 200
        assert reads.count == 2


#: Another process advancing a generation (it imports the module alone, quickly).
_ADVANCE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("generation", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
generation = module.RunGeneration(module.Path(sys.argv[2]))
for _ in range(int(sys.argv[3])):
    generation.begin()
    generation.end()
"""


def test_the_generation_is_shared_and_no_advance_is_lost(tmp_path: Any) -> None:
    path = tmp_path / "db.sqlite3-runs"
    watcher = RunGeneration(path)
    assert watcher.current() == 0
    source = generation_module.__file__
    command = [sys.executable, "-c", _ADVANCE, source, str(path), "300"]
    workers = [subprocess.Popen(command) for _ in range(2)]
    mine = RunGeneration(path)
    for _ in range(300):
        mine.begin()
        mine.end()
    for worker in workers:
        assert worker.wait(60) == 0
    assert watcher.current() == mine.current() == 900
    mine.begin()  # a change under way: no generation to read a run under
    assert watcher.current() is None
    mine.end()
    assert watcher.current() == 901


def test_while_a_change_is_under_way_or_left_so_run_pages_read_the_run(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process began deleting a run (or dropping epochs) and never ended: died
    # between its commit and its second advance. Nothing is served from memory then.
    first, second = _shared_pair(tmp_path)
    try:
        _make_run(first)
        page = f"/v1/runs/{RUN}/indices?epoch=1&limit=10"
        reads = Reads(first, monkeypatch)
        assert first.get(page).status_code == 200 and reads.count == 0
        second.app.state.runs.store.generation.begin()  # type: ignore[attr-defined]
        for _ in range(3):
            assert first.get(page).status_code == 200
        assert reads.count == 3
    finally:
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)


def test_a_database_whose_generation_cannot_be_kept_does_not_start(tmp_path: Any) -> None:
    # A process that could not keep it would delete runs without advancing it, and the
    # others would go on serving the deleted runs' pages: it must not serve at all.
    (tmp_path / "db.sqlite3-runs").mkdir()
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}"))
    with pytest.raises(OSError, match="runs' generation"), TestClient(app):
        pass


def test_a_batch_of_updates_never_deletes_or_drops() -> None:
    from sampleplan.service.storage.runs import RunTransaction

    tx = RunTransaction(None, "r", None, batch=object())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="batch"):
        tx._ending()
