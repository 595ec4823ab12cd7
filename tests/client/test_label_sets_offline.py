"""Label sets and stratified splits through the client: offline streams are the service's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sampleplan.client import PlanCache, RemoteWeightedSampler, SamplePlanClient
from tests.helpers.servers import LiveServer


def _label_sets(n: int = 240) -> list[list[int]]:
    rng = np.random.default_rng(8)
    freq = 0.5 / (1 + np.arange(6))
    return [np.flatnonzero(rng.random(6) < freq).tolist() for _ in range(n)]


@pytest.fixture
def api(live_server: LiveServer) -> Iterator[SamplePlanClient]:
    with SamplePlanClient(live_server.url, retries=1, backoff=0.0, timeout=5.0) as client:
        yield client


@pytest.mark.parametrize(
    "config",
    [
        {"algorithm": "hierarchical", "strategy": "repeat_factor", "threshold": 0.2},
        {
            "algorithm": "hierarchical",
            "split": {"fractions": [0.7, 0.3], "seed": 2, "stratify": True},
        },
        {"label_reduce": "mean", "split": {"fractions": [0.7, 0.3], "seed": 2, "stratify": True}},
        {
            "strategy": "effective_number",
            "split": {"lengths": [200, 40], "seed": 2, "stratify": True},
            "definitions": {"stratify": "stratified-v2", "weights": "weights-v2"},
        },
    ],
    ids=["hierarchical", "hierarchical-stratified", "torch-stratified", "stratified-v2"],
)
def test_offline_label_set_streams_are_the_services(
    live_server: LiveServer, api: SamplePlanClient, private_cache: Path, config: dict[str, Any]
) -> None:
    sets = _label_sets()
    dataset = api.create_dataset(sets)
    assert dataset.multi_label and dataset.unlabelled == sum(not s for s in sets)
    plan = api.create_plan(dataset_id=dataset.id, seed=5, **config)
    served = {e: api.indices(plan.id, epoch=e).tolist() for e in (0, 1)}
    shards = [
        api.indices(plan.id, epoch=1, rank=r, world_size=2, space="dataset").tolist()
        for r in range(2)
    ]
    offsets = api.offsets(dataset.id)
    assert offsets.tolist() == np.cumsum([0] + [len(s) for s in sets]).tolist()
    RemoteWeightedSampler(plan.id, api)  # caches the plan
    entry = os.listdir(private_cache / "plans" / plan.id)
    assert {"codes.npy", "offsets.npy"} <= set(entry)
    cached = PlanCache(private_cache).load(plan.id)
    assert cached.offsets is not None and cached.offsets.tolist() == offsets.tolist()
    live_server.stop()
    for epoch in (0, 1):
        assert list(RemoteWeightedSampler(plan.id, None, epoch=epoch)) == served[epoch]
    for rank in range(2):
        offline = RemoteWeightedSampler(
            plan.id, None, epoch=1, rank=rank, world_size=2, space="dataset"
        )
        assert list(offline) == shards[rank]


def test_label_set_files_upload_from_the_client(api: SamplePlanClient, tmp_path: Path) -> None:
    sets = _label_sets(30)
    expected = api.create_dataset(sets)
    csv = tmp_path / "tags.csv"
    # A one-column CSV writes an empty cell as "" (a blank line would be skipped).
    cells = [";".join(map(str, s)) or '""' for s in sets]
    csv.write_text("tags\n" + "".join(cell + "\n" for cell in cells))
    from_csv = api.create_dataset_from_file(csv, label_column="tags", label_separator=";")
    npz = tmp_path / "tags.npz"
    np.savez(
        npz,
        offsets=np.cumsum([0] + [len(s) for s in sets]),
        values=np.array([c for s in sets for c in s], dtype=np.int64),
    )
    from_npz = api.create_dataset_from_file(npz)
    assert from_csv.id == from_npz.id == expected.id


def test_pyarrow_list_arrays_upload_as_label_sets(api: SamplePlanClient, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sets = [["cat", "dog"], [], ["emu"], ["dog", "dog"]]
    expected = api.create_dataset(sets)
    assert api.create_dataset(pa.array(sets)).id == expected.id
    assert api.create_dataset(pa.chunked_array([pa.array(sets[:2]), pa.array(sets[2:])])).id == (
        expected.id
    )
    path = tmp_path / "tags.parquet"
    pq.write_table(pa.table({"tags": sets, "other": [1, 2, 3, 4]}), path)
    assert api.create_dataset_from_file(path, label_column="tags").id == expected.id
