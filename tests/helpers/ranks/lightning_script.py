"""The guide's Lightning snippet (docs/how-to/trainers.md), run as a program.

``python lightning_script.py URL PLAN_ID OUT STRATEGY`` runs the snippet as written (its
model included: 3 epochs of ``Trainer(strategy=STRATEGY, devices=2, accelerator="cpu")``
with Lightning's defaults, ``use_distributed_sampler=True`` among them) on ``api``, ``plan``
and ``train_subset`` made as the tutorial makes them (a ``Subset`` of ``(path, label)``
pairs). Each rank appends the subset positions it fetched to ``OUT/rank{r}.txt``.
``ddp`` re-runs this file for rank 1; ``ddp_spawn`` pickles the model and the loader (and
the sampler in it) into 2 processes, which import this file as ``__mp_main__``: the
snippet's classes are defined when the file is imported, as a script's are.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import random_split

from sampleplan.client import SamplePlanClient
from tests.helpers.datasets import SPLIT_SEED, imbalanced_labels
from tests.helpers.docs_blocks import DOCS, blocks_under

EPOCHS = 3
COUNTS = (60, 25, 8)  # the test's labels
(SNIPPET,) = blocks_under(DOCS / "how-to" / "trainers.md", "## Lightning")

# The snippet's imports and classes, at import time (see above).
_definitions = [
    node
    for node in ast.parse(SNIPPET).body
    if isinstance(node, ast.ClassDef | ast.Import | ast.ImportFrom)
]
exec(compile(ast.Module(body=_definitions, type_ignores=[]), "<snippet>", "exec"), globals())


class Fetched(list[tuple[str, int]]):
    """``(path, label)`` pairs; item ``i`` fetched by rank ``r`` is appended to
    ``OUT/rank{r}.txt`` as its subset position (picklable: ``ddp_spawn``)."""

    out: str
    position: dict[int, int]

    def __getitem__(self, i: Any) -> Any:
        rank = torch.distributed.get_rank()
        with open(Path(self.out, f"rank{rank}.txt"), "a", encoding="utf-8") as file:
            file.write(f"{self.position[int(i)]}\n")
        return super().__getitem__(i)


def main(url: str, plan_id: str, out: str, strategy: str) -> None:
    """Run the guide's Lightning snippet as written, but for the strategy under test."""
    assert 'strategy="ddp"' in SNIPPET and f"max_epochs={EPOCHS}" in SNIPPET
    api = SamplePlanClient(url)
    plan = api.get_plan(plan_id)
    labels = imbalanced_labels(COUNTS)
    dataset = Fetched((f"class{y}/{i:04d}.jpg", y) for i, y in enumerate(labels))
    train_subset, _ = random_split(
        dataset, [0.7, 0.3], generator=torch.Generator().manual_seed(SPLIT_SEED)
    )
    dataset.out = out
    dataset.position = {index: p for p, index in enumerate(train_subset.indices)}
    # In this module's globals, so that the model's class is the one pickled by name.
    globals().update(api=api, plan=plan, train_subset=train_subset)
    exec(SNIPPET.replace('strategy="ddp"', f'strategy="{strategy}"'), globals())


if __name__ == "__main__":
    main(*sys.argv[1:5])
