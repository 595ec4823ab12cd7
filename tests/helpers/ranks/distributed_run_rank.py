"""One rank of the two-process runs test, kept light: spawned children import only this."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from sampleplan.client import RemoteWeightedSampler, SamplePlanClient

WORLD_SIZE = 2
EPOCHS = (0, 1, 2)
BATCH = 8
UPDATE_BATCH = 20


def loss_of(indices: torch.Tensor) -> torch.Tensor:
    """A stand-in for per-sample losses: a fixed function of the index."""
    return (indices % 5).to(torch.float64) + 0.25


def run_rank_main(rank: int, url: str, plan_id: str, run: str, port: int, out: str) -> None:
    """Train three epochs of a run, sending ema updates; record this rank's epochs."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        with SamplePlanClient(url, retries=2, backoff=0.05) as api:
            sampler = RemoteWeightedSampler(
                plan_id, api, run=run, update_batch_size=UPDATE_BATCH, fallback=False
            )
            positions = list(range(sampler.plan.population_size))
            loader = DataLoader(positions, batch_size=BATCH, sampler=sampler)
            seen: dict[str, list[int]] = {}
            for epoch in EPOCHS:
                sampler.set_epoch(epoch)
                seen[str(epoch)] = []
                for batch in loader:
                    seen[str(epoch)] += batch.tolist()
                    if rank == 1:
                        time.sleep(0.01)  # the slow rank: its updates arrive last
                    sampler.update_weights(batch, loss_of(batch), op="ema", alpha=0.5)
            sampler.flush_updates()
        Path(out, f"rank{rank}.json").write_text(json.dumps(seen))
        dist.barrier()  # leave together (a lone teardown can abort the peer at exit)
    finally:
        dist.destroy_process_group()
