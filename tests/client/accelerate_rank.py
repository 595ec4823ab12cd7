"""One process of the Accelerate test; spawned children import only this."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from client import RemoteWeightedSampler, SamplePlanClient

WORLD_SIZE = 2
BATCH = 8
EPOCHS = (0, 1)


def process_main(rank: int, url: str, plan_id: str, port: int, out: str, cache: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE),
        GLOO_SOCKET_IFNAME="lo",
    )
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    # even_batches=False: no batch is repeated to even out the processes' counts.
    accelerator = Accelerator(
        cpu=True, dataloader_config=DataLoaderConfiguration(even_batches=False)
    )
    result: dict[str, object] = {}
    with SamplePlanClient(url, retries=2, backoff=0.05) as api:
        # As the README says: the whole epoch in every process; Accelerate deals the batches.
        sampler = RemoteWeightedSampler(plan_id, api, world_size=1, rank=0, cache_dir=cache)
        positions = list(range(sampler.plan.population_size))
        loader = accelerator.prepare(DataLoader(positions, batch_size=BATCH, sampler=sampler))
        for epoch in EPOCHS:
            loader.set_epoch(epoch)
            result[str(epoch)] = [batch.tolist() for batch in loader]
        # A sampler left to shard by the process group is refused, not re-sharded.
        default = RemoteWeightedSampler(plan_id, api, cache_dir=cache)
        wrong = accelerator.prepare(DataLoader(positions, batch_size=BATCH, sampler=default))
        try:
            next(iter(wrong))
        except RuntimeError as exc:
            result["refused"] = str(exc)
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    accelerator.wait_for_everyone()
    torch.distributed.destroy_process_group()
