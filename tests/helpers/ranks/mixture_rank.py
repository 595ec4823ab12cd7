"""One rank of the mixture gloo test (2 processes, then 3); spawned children import only this.

Each rank trains on ``ConcatDataset`` of three sources whose items name themselves
(``"web:17"``), so the test reads which element of which source every index reached.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch.distributed as dist
from torch.utils.data import ConcatDataset, DataLoader

from sampleplan.client import RemoteWeightedSampler, SamplePlanClient

BATCH = 4
#: The epoch every rank takes whole, and the one cut by a checkpoint and finished elsewhere.
WHOLE, CUT = 1, 2


def sources(lengths: dict[str, int]) -> ConcatDataset[str]:
    """The sources as ``ConcatDataset`` numbers them: items ``"name:j"``."""
    return ConcatDataset([[f"{name}:{j}" for j in range(n)] for name, n in lengths.items()])


def rank_main(
    rank: int,
    world_size: int,
    url: str,
    plan_id: str,
    lengths: dict[str, int],
    port: int,
    out: str,
    cache: str,
) -> None:
    """2 ranks: epoch WHOLE, then half of epoch CUT and a checkpoint; 3 ranks: the rest of it."""
    # torchdata 0.11 calls a torch function that torch 2.13 deprecates; not ours.
    warnings.filterwarnings("ignore", "'set_vital' is deprecated")
    from torchdata.stateful_dataloader import StatefulDataLoader

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        with SamplePlanClient(url, retries=2, backoff=0.05) as api:
            data = sources(lengths)
            sampler = RemoteWeightedSampler(plan_id, api, chunk_size=8, cache_dir=cache)
            result: dict[str, object] = {"rank": sampler.rank, "world_size": sampler.world_size}
            checkpoint = Path(out, "checkpoint.json")
            if world_size == 2:
                sampler.set_epoch(WHOLE)
                result["whole"] = [
                    x for batch in DataLoader(data, BATCH, sampler=sampler) for x in batch
                ]
                sampler.set_epoch(CUT)
                loader = StatefulDataLoader(data, batch_size=BATCH, sampler=sampler)
                iterator = iter(loader)
                batches = [next(iterator) for _ in range(len(loader) // 2)]
                if rank == 0:
                    checkpoint.write_text(json.dumps(loader.state_dict()))
            else:
                loader = StatefulDataLoader(data, batch_size=BATCH, sampler=sampler)
                loader.load_state_dict(json.loads(checkpoint.read_text()))
                batches = list(loader)
            result["cut"] = [x for batch in batches for x in batch]
            Path(out, f"world{world_size}-rank{rank}.json").write_text(json.dumps(result))
        dist.barrier()  # leave together (a lone teardown can abort the peer at exit)
    finally:
        dist.destroy_process_group()
