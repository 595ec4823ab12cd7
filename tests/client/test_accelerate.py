"""Hugging Face Accelerate's prepare() on 2 CPU processes: together, exactly one epoch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from sampleplan.client import SamplePlanClient
from tests.helpers.datasets import PLAN_CONFIG, Items, classic_stream, imbalanced_labels
from tests.helpers.servers import LiveServer, free_port

pytest.importorskip("accelerate")

from tests.helpers.ranks.accelerate_rank import BATCH, EPOCHS, WORLD_SIZE, process_main

pytestmark = pytest.mark.slow  # starts processes: `make test-quick` leaves it out

N = 100  # 12.5 batches of 8: the last batch is short and the processes' counts differ


def test_accelerate_processes_share_one_epoch_exactly(
    module_server: LiveServer, tmp_path: Path, private_cache: Path
) -> None:
    dataset = Items(imbalanced_labels(counts=(70, 30, 12)))
    with SamplePlanClient(module_server.url) as api:
        plan = api.create_plan(labels=dataset.targets, **{**PLAN_CONFIG, "num_samples": N})
    mp.spawn(
        process_main,
        args=(module_server.url, plan.id, free_port(), str(tmp_path), str(private_cache)),
        nprocs=WORLD_SIZE,
        join=True,
    )
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    for epoch in EPOCHS:
        stream = classic_stream(dataset, epoch, num_samples=N)
        batches = [stream[k : k + BATCH] for k in range(0, N, BATCH)]
        for rank, result in enumerate(results):
            # Accelerate deals batch b to process b % 2.
            assert result[str(epoch)] == batches[rank::WORLD_SIZE]
    for result in results:
        assert "world_size=1, rank=0" in result["refused"]
