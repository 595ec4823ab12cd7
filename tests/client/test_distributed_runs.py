"""Two real ranks (gloo on loopback) train one run: every rank's updates land in order."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path

import pytest

from sampleplan.client import SamplePlanClient
from tests.helpers import reference
from tests.helpers.ranks import spawn
from tests.helpers.ranks.distributed_run_rank import (
    BATCH,
    EPOCHS,
    UPDATE_BATCH,
    WORLD_SIZE,
    run_rank_main,
)
from tests.helpers.servers import LiveServer, free_port

pytestmark = pytest.mark.slow  # starts processes: `make test-quick` leaves it out

LABELS = [0] * 70 + [1] * 9 + [2] * 21


def test_two_ranks_updating_one_run_agree_with_local_wrs(
    live_server: LiveServer, tmp_path: Path
) -> None:
    with SamplePlanClient(live_server.url) as api:
        plan = api.create_plan(labels=LABELS, seed=6)
        run = f"ddp-{uuid.uuid4().hex[:8]}"
        spawn(
            run_rank_main,
            args=(live_server.url, plan.id, run, free_port(), str(tmp_path)),
            nprocs=WORLD_SIZE,
        )
        frozen = {epoch: api.run_weights(run, epoch).tolist() for epoch in EPOCHS}
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    counts = Counter(LABELS)
    weights = [1.0 / counts[t] for t in LABELS]
    calls_per_message = -(-UPDATE_BATCH // BATCH)  # the sampler cuts batches by count
    for epoch in EPOCHS:
        assert frozen[epoch] == weights, epoch
        stream = reference.weighted_stream(weights, len(LABELS), True, 6 + epoch)
        shards = [reference.distributed_shard(stream, r, WORLD_SIZE) for r in range(WORLD_SIZE)]
        assert [s[str(epoch)] for s in seen] == shards
        # Each rank's messages carry the step of their first call; apply by (step, rank).
        messages = []
        for rank, shard in enumerate(shards):
            calls = [shard[i : i + BATCH] for i in range(0, len(shard), BATCH)]
            for first in range(0, len(calls), calls_per_message):
                group = [i for call in calls[first : first + calls_per_message] for i in call]
                messages.append(((first, rank), group))
        for _, group in sorted(messages):
            for i in group:
                weights[i] = 0.5 * weights[i] + 0.5 * float(i % 5 + 0.25)
