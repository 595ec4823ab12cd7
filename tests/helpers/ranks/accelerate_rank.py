"""One process of the Accelerate test, started as the guide says: ``ACCELERATE_USE_CPU=true
torchrun --nproc_per_node 2 accelerate_rank.py URL PLAN_ID OUT CACHE``.

It runs the guide's snippet (docs/how-to/trainers.md, "Accelerate") as written, with
``api``, ``plan`` and ``train_subset`` made as the tutorial makes them (a ``Subset`` of
``(path, label)`` pairs), and writes to ``OUT/rank{r}.json`` the subset positions its
loader fetched, in order, and the message of a sampler left to shard by the group.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, random_split

from sampleplan.client import RemoteWeightedSampler, SamplePlanClient
from tests.helpers.datasets import SPLIT_SEED, imbalanced_labels
from tests.helpers.docs_blocks import DOCS, blocks_under

WORLD_SIZE = 2
BATCH = 8
EPOCHS = (0, 1)
COUNTS = (70, 30, 12)


class Fetched(list[tuple[str, int]]):
    """``(path, label)`` pairs, as ``image_folder_targets(...).samples``; remembers which
    items were fetched (the loader runs in this process)."""

    fetched: list[int]

    def __getitem__(self, i: Any) -> Any:
        self.fetched.append(int(i))
        return super().__getitem__(i)


def main(url: str, plan_id: str, out: str, cache: str) -> None:
    (snippet,) = blocks_under(DOCS / "how-to" / "trainers.md", "## Accelerate")
    dataset = Fetched((f"class{y}/{i:04d}.jpg", y) for i, y in enumerate(imbalanced_labels(COUNTS)))
    dataset.fetched = []
    train_subset, _ = random_split(
        dataset, [0.7, 0.3], generator=torch.Generator().manual_seed(SPLIT_SEED)
    )
    position = {index: p for p, index in enumerate(train_subset.indices)}
    result: dict[str, object] = {}
    with SamplePlanClient(url, retries=2, backoff=0.05) as api:
        plan = api.get_plan(plan_id)
        namespace: dict[str, object] = {"api": api, "plan": plan, "train_subset": train_subset}
        exec(snippet, namespace)
        accelerator: Any = namespace["accelerator"]
        result["fetched"] = [position[i] for i in dataset.fetched]
        result["num_processes"] = accelerator.num_processes
        rank = accelerator.process_index
        # A sampler left to shard by the process group is refused, not re-sharded.
        positions = list(range(plan.population_size))
        default = RemoteWeightedSampler(plan_id, api, cache_dir=cache)
        wrong = accelerator.prepare(DataLoader(positions, batch_size=BATCH, sampler=default))
        try:
            next(iter(wrong))
        except RuntimeError as exc:
            result["refused"] = str(exc)
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    accelerator.wait_for_everyone()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:5])
