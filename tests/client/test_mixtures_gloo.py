"""Real gloo over a mixture plan: 2 ranks deal epochs as ``DistributedSampler`` does through
``ConcatDataset``; a checkpoint taken mid-epoch on 2 ranks is finished by 3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch.utils.data import DistributedSampler

from sampleplan.client import SamplePlanClient
from tests.helpers.ranks import spawn
from tests.helpers.ranks.mixture_rank import CUT, WHOLE, rank_main, sources
from tests.helpers.servers import LiveServer, free_port

pytestmark = pytest.mark.slow  # starts processes: `make test-quick` leaves it out

LENGTHS = {"web": 40, "code": 25, "math": 9}
N = 101


def test_two_ranks_deal_a_mixture_and_three_finish_its_epoch(
    live_server: LiveServer, tmp_path: Path, private_cache: Path
) -> None:
    with SamplePlanClient(live_server.url) as api:
        ids = {
            name: api.create_dataset([(i + k) % 3 for k in range(n)]).id
            for i, (name, n) in enumerate(LENGTHS.items())
        }
        plan = api.create_plan(
            sources=[{"name": name, "dataset_id": ids[name]} for name in LENGTHS],
            mixing={"proportions": {"temperature": 2.0}, "block": 8},
            num_samples=N,
            seed=5,
        )
        streams = {e: api.indices(plan.id, epoch=e).tolist() for e in (WHOLE, CUT)}
    for world_size in (2, 3):
        spawn(
            rank_main,
            args=(
                world_size,
                live_server.url,
                plan.id,
                LENGTHS,
                free_port(),
                str(tmp_path),
                str(private_cache),
            ),
            nprocs=world_size,
        )
    results = {
        w: [json.loads((tmp_path / f"world{w}-rank{r}.json").read_text()) for r in range(w)]
        for w in (2, 3)
    }
    data = sources(LENGTHS)  # torch's ConcatDataset: which source and element each index is
    # Each rank's epoch is DistributedSampler's dealing of the one epoch stream.
    for rank, result in enumerate(results[2]):
        assert (result["rank"], result["world_size"]) == (rank, 2)
        dealt = DistributedSampler(range(N), num_replicas=2, rank=rank, shuffle=False)
        assert result["whole"] == [data[streams[WHOLE][p]] for p in dealt]
    # Epoch CUT: 2 ranks took 6 batches of 4 each, the stream's first 48 positions ...
    cut = [data[i] for i in streams[CUT]]
    first = [result["cut"] for result in results[2]]
    assert [len(s) for s in first] == [24, 24]
    assert sorted(x for s in first for x in s) == sorted(cut[:48])
    # ... and 3 ranks dealt the other 53, padded by one as DistributedSampler pads.
    rest = cut[48:]
    for rank, result in enumerate(results[3]):
        assert result["cut"] == [rest[(rank + 3 * k) % len(rest)] for k in range(18)]
    seen = [x for result in results[2] + results[3] for x in result["cut"]]
    assert sorted(seen) == sorted([*cut, rest[0]])  # nothing lost, nothing repeated
