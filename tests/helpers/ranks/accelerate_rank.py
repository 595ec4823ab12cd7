"""One process of the Accelerate test; spawned children import only this."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from sampleplan.client import SamplePlanClient
from tests.helpers.docs_blocks import DOCS, blocks_under

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
        # What `accelerate launch --cpu --num_processes 2` sets for each process.
        ACCELERATE_USE_CPU="true",
    )
    from sampleplan.client import RemoteWeightedSampler

    (snippet,) = blocks_under(DOCS / "how-to" / "trainers.md", "## Accelerate")
    result: dict[str, object] = {}
    with SamplePlanClient(url, retries=2, backoff=0.05) as api:
        plan = api.get_plan(plan_id)
        positions = list(range(plan.population_size))
        # The guide's snippet as written: a whole-epoch sampler, Accelerate deals batches.
        namespace: dict[str, object] = {"api": api, "plan": plan, "train_subset": positions}
        exec(snippet, namespace)
        for epoch, batches in enumerate(namespace["epochs"]):  # type: ignore[call-overload]
            result[str(epoch)] = batches
        # A sampler left to shard by the process group is refused, not re-sharded.
        accelerator = namespace["accelerator"]
        default = RemoteWeightedSampler(plan_id, api, cache_dir=cache)
        wrong = accelerator.prepare(  # type: ignore[attr-defined]
            DataLoader(positions, batch_size=BATCH, sampler=default)
        )
        try:
            next(iter(wrong))
        except RuntimeError as exc:
            result["refused"] = str(exc)
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    accelerator.wait_for_everyone()  # type: ignore[attr-defined]
    torch.distributed.destroy_process_group()
