"""Real gloo: 3 processes take half an epoch and checkpoint; 2 processes load it and finish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sampleplan.client import SamplePlanClient
from tests.helpers.datasets import PLAN_CONFIG, Items, classic_stream, imbalanced_labels
from tests.helpers.ranks import spawn
from tests.helpers.ranks.elastic_rank import EPOCH, rank_main
from tests.helpers.servers import LiveServer, free_port

pytestmark = pytest.mark.slow  # starts processes: `make test-quick` leaves it out

N = 131


def _round_robin(shares: list[list[int]], step: int) -> list[int]:
    """The ranks' shares in the order they were dealt (``step`` per rank per turn)."""
    longest = max(map(len, shares))
    return [x for k in range(0, longest, step) for share in shares for x in share[k : k + step]]


def test_three_ranks_checkpoint_two_ranks_finish_the_epoch(
    live_server: LiveServer, tmp_path: Path, private_cache: Path
) -> None:
    dataset = Items(imbalanced_labels(counts=(150, 40, 9)))
    with SamplePlanClient(live_server.url) as api:
        plan = api.create_plan(labels=dataset.targets, **{**PLAN_CONFIG, "num_samples": N})
    for world_size in (3, 2):
        spawn(
            rank_main,
            args=(
                world_size,
                live_server.url,
                plan.id,
                free_port(),
                str(tmp_path),
                str(private_cache),
            ),
            nprocs=world_size,
        )
    stream = classic_stream(dataset, EPOCH, num_samples=N)
    results = {
        w: [json.loads((tmp_path / f"phase{w}-rank{r}.json").read_text()) for r in range(w)]
        for w in (3, 2)
    }
    phase = {w: [result["seen"] for result in results[w]] for w in (3, 2)}
    # A sampler that dealt to a world of one before the group existed refuses the group.
    for w in (3, 2):
        for result in results[w]:
            assert (
                f"dealt epochs to world_size=1 and now runs in a process group of world_size={w}"
                in result["refused"]
            )
    # 3 ranks of ceil(131 / 3) = 44 took 22 each (11 batches of 2): the epoch's first 66.
    assert [len(s) for s in phase[3]] == [22, 22, 22]
    assert sorted(x for s in phase[3] for x in s) == sorted(stream[:66])
    # 2 ranks dealt the other 65, padded by one (the rest's first index), as DistributedSampler.
    rest = stream[66:]
    assert [len(s) for s in phase[2]] == [33, 33]
    for rank, share in enumerate(phase[2]):
        assert share == [rest[(rank + 2 * k) % len(rest)] for k in range(33)]
    assert sorted(x for s in phase[3] + phase[2] for x in s) == sorted([*stream, rest[0]])
