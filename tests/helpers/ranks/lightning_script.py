"""The guide's Lightning snippet (docs/how-to/trainers.md) on a tiny model, run as a program.

``python lightning_script.py URL PLAN_ID OUT STRATEGY`` runs the snippet (3 epochs of
``Trainer(strategy=STRATEGY, devices=2, accelerator="cpu")`` with Lightning's defaults,
``use_distributed_sampler=True`` among them), and the model writes the indices each rank
trained on in each epoch to ``OUT/rank{r}-epoch{e}.json``. ``ddp`` re-runs this file for
rank 1; ``ddp_spawn`` pickles the loader (and the sampler in it) into 2 processes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import Dataset

from sampleplan.client import SamplePlanClient
from tests.helpers.docs_blocks import DOCS, blocks_under

EPOCHS = 3


class Positions(Dataset[torch.Tensor]):
    """Item ``i`` is ``tensor([i])``: a batch shows which samples it holds."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([float(i)])


class Tiny(L.LightningModule):
    def __init__(self, out: str) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.out = out
        self.seen: list[int] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.seen += batch[:, 0].long().tolist()
        return self.layer(batch).pow(2).mean()

    def on_train_epoch_end(self) -> None:
        name = f"rank{self.global_rank}-epoch{self.current_epoch}.json"
        Path(self.out, name).write_text(json.dumps(self.seen))
        self.seen = []

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main(url: str, plan_id: str, out: str, strategy: str) -> None:
    """Run the guide's Lightning snippet as written, but for the strategy under test."""
    (snippet,) = blocks_under(DOCS / "how-to" / "trainers.md", "## Lightning")
    assert 'strategy="ddp"' in snippet and f"max_epochs={EPOCHS}" in snippet
    api = SamplePlanClient(url)
    plan = api.get_plan(plan_id)
    namespace = {
        "api": api,
        "plan": plan,
        "train_subset": Positions(plan.population_size),
        "model": Tiny(out),
    }
    exec(snippet.replace('strategy="ddp"', f'strategy="{strategy}"'), namespace)


if __name__ == "__main__":
    main(*sys.argv[1:5])
