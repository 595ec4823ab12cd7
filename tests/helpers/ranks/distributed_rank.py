"""One rank of the two-process test, kept light: spawned children import only this."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from sampleplan.client import RemoteWeightedSampler, SamplePlanClient

WORLD_SIZE = 2
EPOCHS = (0, 1)


def rank_main(rank: int, url: str, plan_id: str, port: int, out: str, cache: str) -> None:
    """Join the group, take rank and world size from it, record this rank's epochs."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        with SamplePlanClient(url, retries=2, backoff=0.05) as api:
            sampler = RemoteWeightedSampler(plan_id, api, chunk_size=40, cache_dir=cache)
            assert (sampler.rank, sampler.world_size) == (rank, WORLD_SIZE)
            positions = list(range(sampler.plan.population_size))
            loader = DataLoader(positions, batch_size=8, sampler=sampler)
            seen: dict[str, list[int]] = {}
            for epoch in EPOCHS:
                sampler.set_epoch(epoch)
                seen[str(epoch)] = torch.cat(list(loader)).tolist()
                # Every rank got as many as the others: DDP's collectives stay in step.
                counts = [0] * WORLD_SIZE
                dist.all_gather_object(counts, len(seen[str(epoch)]))
                assert counts == [len(sampler)] * WORLD_SIZE
        Path(out, f"rank{rank}.json").write_text(json.dumps(seen))
        dist.barrier()  # leave together (a lone teardown can abort the peer at exit)
    finally:
        dist.destroy_process_group()
