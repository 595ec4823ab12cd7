"""One rank of the elastic gloo test (3 processes, then 2); spawned children import only this."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
import torch.distributed as dist

from sampleplan.client import RemoteWeightedSampler, SamplePlanClient

BATCH = 2
EPOCH = 3


def rank_main(
    rank: int, world_size: int, url: str, plan_id: str, port: int, out: str, cache: str
) -> None:
    """Phase 1 (3 ranks): take half an epoch and checkpoint; phase 2 (2 ranks): load, finish."""
    # torchdata 0.11 calls a torch function that torch 2.13 deprecates; not ours.
    warnings.filterwarnings("ignore", "'set_vital' is deprecated")
    from torchdata.stateful_dataloader import StatefulDataLoader

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    with SamplePlanClient(url, retries=2, backoff=0.05) as api:
        # Both built before the process group exists: ranks are read when they iterate.
        sampler = RemoteWeightedSampler(plan_id, api, chunk_size=16, cache_dir=cache)
        early = RemoteWeightedSampler(plan_id, api, chunk_size=16, cache_dir=cache)
        next(iter(early))  # deals to a world of one
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
        )
        try:
            refused = ""
            try:
                iter(early)
            except RuntimeError as exc:
                refused = str(exc)
            assert (sampler.rank, sampler.world_size) == (rank, world_size)
            positions = list(range(sampler.plan.population_size))
            loader = StatefulDataLoader(positions, batch_size=BATCH, sampler=sampler)
            checkpoint = Path(out, "checkpoint.json")
            sampler.set_epoch(EPOCH)
            if world_size == 3:
                iterator = iter(loader)
                batches = [next(iterator) for _ in range(len(loader) // 2)]
                if rank == 0:
                    checkpoint.write_text(json.dumps(loader.state_dict()))
            else:
                loader.load_state_dict(json.loads(checkpoint.read_text()))
                batches = list(loader)
            seen = torch.cat(batches).tolist() if batches else []
            result = {"seen": seen, "refused": refused}
            Path(out, f"phase{world_size}-rank{rank}.json").write_text(json.dumps(result))
            dist.barrier()  # leave together (a lone teardown can abort the peer at exit)
        finally:
            dist.destroy_process_group()
