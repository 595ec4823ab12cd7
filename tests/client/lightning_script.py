"""A tiny Lightning job on a RemoteWeightedSampler, run as its own program by the tests.

``python lightning_script.py URL PLAN_ID OUT STRATEGY``: trains 3 epochs with
``Trainer(strategy=STRATEGY, devices=2, accelerator="cpu")`` and Lightning's defaults for
everything that touches data (``use_distributed_sampler=True``), and writes the indices
each rank trained on in each epoch to ``OUT/rank{r}-epoch{e}.json``. ``ddp`` re-runs this
file for rank 1; ``ddp_spawn`` pickles the loader (and the sampler in it) into 2 processes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from client import RemoteWeightedSampler, SamplePlanClient

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
    api = SamplePlanClient(url)
    # Built before Lightning starts the process group: ranks are read at iter().
    sampler = RemoteWeightedSampler(plan_id, api)
    loader = DataLoader(Positions(sampler.plan.population_size), batch_size=8, sampler=sampler)
    trainer = L.Trainer(
        strategy=strategy,
        devices=2,
        accelerator="cpu",
        max_epochs=EPOCHS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Tiny(out), train_dataloaders=loader)


if __name__ == "__main__":
    main(*sys.argv[1:5])
