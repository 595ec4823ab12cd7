"""One rank of the two-process batch test, kept light: spawned children import only this."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch.distributed as dist
from torch.utils.data import DataLoader

from sampleplan.client import RemoteBatchSampler, SamplePlanClient

BATCH_EPOCHS = (0, 1)


def batch_rank_main(rank: int, url: str, plan_id: str, port: int, out: str, cache: str) -> None:
    """Build the sampler first, then join the group: its rank is read when it is used."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    with SamplePlanClient(url, retries=2, backoff=0.05) as api:
        sampler = RemoteBatchSampler(plan_id, api, chunk_size=24, cache_dir=cache)
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
        )
        try:
            assert (sampler.rank, sampler.world_size) == (rank, 2)
            positions = list(range(sampler.plan.population_size))
            loader = DataLoader(positions, batch_sampler=sampler)
            seen: dict[str, list[list[int]]] = {}
            for epoch in BATCH_EPOCHS:
                sampler.set_epoch(epoch)
                seen[str(epoch)] = [batch.tolist() for batch in loader]
                counts = [0, 0]
                dist.all_gather_object(counts, len(seen[str(epoch)]))
                assert counts == [len(sampler)] * 2  # every rank as many batches
            Path(out, f"rank{rank}.json").write_text(json.dumps(seen))
            dist.barrier()  # leave together
        finally:
            dist.destroy_process_group()
