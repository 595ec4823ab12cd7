"""Two real processes with torch.distributed (gloo on loopback) share one weighted epoch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sampleplan.client import SamplePlanClient
from tests.helpers import reference
from tests.helpers.datasets import PLAN_CONFIG, Items, classic_stream, imbalanced_labels
from tests.helpers.ranks import spawn
from tests.helpers.ranks.distributed_rank import EPOCHS, WORLD_SIZE, rank_main
from tests.helpers.servers import LiveServer, free_port

pytestmark = pytest.mark.slow  # starts processes: `make test-quick` leaves it out


def test_two_ranks_shard_one_global_weighted_draw(
    live_server: LiveServer, tmp_path: Path, private_cache: Path
) -> None:
    dataset = Items(imbalanced_labels(counts=(150, 40, 9)))
    with SamplePlanClient(live_server.url) as api:
        plan = api.create_plan(labels=dataset.targets, **{**PLAN_CONFIG, "num_samples": 131})
    # The service runs in a thread of this process; the ranks reach it over loopback.
    spawn(
        rank_main,
        args=(live_server.url, plan.id, free_port(), str(tmp_path), str(private_cache)),
        nprocs=WORLD_SIZE,
    )
    for epoch in EPOCHS:
        stream = classic_stream(dataset, epoch, num_samples=131)
        shards = [
            json.loads((tmp_path / f"rank{r}.json").read_text())[str(epoch)] for r in range(2)
        ]
        for rank, shard in enumerate(shards):
            assert shard == reference.distributed_shard(stream, rank, WORLD_SIZE)
        # Together they cover the padded epoch: 131 draws plus the first one again.
        assert sorted(shards[0] + shards[1]) == sorted([*stream, stream[0]])
        assert len(shards[0]) == len(shards[1]) == 66
