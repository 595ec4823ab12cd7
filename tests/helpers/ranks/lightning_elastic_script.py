"""A Lightning job checkpointed mid-epoch with 2 processes, resumed with 1; run by the tests.

``python lightning_elastic_script.py URL PLAN_ID OUT PHASE``: phase ``save`` trains
``Trainer(strategy="ddp", devices=2)`` for ``STEPS`` steps of epoch 0 and checkpoints
(Lightning stores the ``StatefulDataLoader``'s state, the sampler's in it); phase
``resume`` fits the rest of epoch 0 from that checkpoint in a single process. Each rank
writes what it trained on to ``OUT/{phase}-rank{r}.json``.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from sampleplan.client import RemoteWeightedSampler, SamplePlanClient
from tests.helpers.datasets import Positions

STEPS = 4
BATCH = 4


class Recorder(L.LightningModule):
    def __init__(self, out: str, phase: str) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.out = out
        self.phase = phase
        self.seen: list[int] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.seen += batch[:, 0].long().tolist()
        return self.layer(batch).pow(2).mean()

    def on_train_end(self) -> None:
        name = f"{self.phase}-rank{self.global_rank}.json"
        Path(self.out, name).write_text(json.dumps(self.seen))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main(url: str, plan_id: str, out: str, phase: str) -> None:
    # torchdata 0.11 calls a torch function that torch 2.13 deprecates; not ours.
    warnings.filterwarnings("ignore", "'set_vital' is deprecated")
    from torchdata.stateful_dataloader import StatefulDataLoader

    api = SamplePlanClient(url)
    sampler = RemoteWeightedSampler(plan_id, api)
    loader = StatefulDataLoader(
        Positions(sampler.plan.population_size), batch_size=BATCH, sampler=sampler
    )
    common = {
        "accelerator": "cpu",
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    if phase == "save":
        checkpoint = ModelCheckpoint(dirpath=out, filename="mid", every_n_train_steps=STEPS)
        trainer = L.Trainer(
            strategy="ddp", devices=2, max_steps=STEPS, callbacks=[checkpoint], **common
        )
        trainer.fit(Recorder(out, phase), train_dataloaders=loader)
    else:
        trainer = L.Trainer(devices=1, max_epochs=1, enable_checkpointing=False, **common)
        trainer.fit(Recorder(out, phase), train_dataloaders=loader, ckpt_path=f"{out}/mid.ckpt")
        loops = torch.load(f"{out}/mid.ckpt", weights_only=False)["loops"]
        loader_states = loops["fit_loop"]["state_dict"]["combined_loader"]
        Path(out, "loader-state.json").write_text(json.dumps(loader_states))


if __name__ == "__main__":
    main(*sys.argv[1:5])
