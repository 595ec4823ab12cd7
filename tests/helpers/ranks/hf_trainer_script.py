"""SamplePlanTrainer in one process of a ``torchrun --nproc_per_node 2`` job (gloo, CPU).

``torchrun --nproc_per_node 2 hf_trainer_script.py URL PLAN_ID OUT`` trains the tiny model
2 epochs, drawing from run ``hf-ddp`` of the plan with ``ema`` loss updates, and each rank
writes to ``OUT/rank{r}.json`` the samples its dataset fed (``fed``) and the
``(index, loss)`` pairs it sent to the run (``sent``, one list per flush).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sampleplan.client import SamplePlanClient
from sampleplan.integrations.transformers import SamplePlanTrainer
from tests.helpers.hf import Recording, labels_64, tiny_model, training_arguments


class Sent(SamplePlanTrainer):
    sent: list[list[tuple[int, float]]]

    def update_run(self, indices: Any, losses: Any) -> None:
        self.sent = [
            *getattr(self, "sent", []),
            list(zip(indices.tolist(), losses.tolist(), strict=True)),
        ]
        super().update_run(indices, losses)


def main(url: str, plan_id: str, out: str) -> None:
    data = Recording(labels_64())
    with SamplePlanClient(url) as api:
        trainer = Sent(
            plan_id=plan_id,
            api=api,
            run="hf-ddp",
            loss_update={"op": "ema", "alpha": 0.1},
            model=tiny_model(),
            args=training_arguments(str(Path(out) / "trainer"), ddp_backend="gloo"),
            train_dataset=data,
        )
        trainer.train()
        rank = trainer.args.process_index
        result = {"fed": data.fed, "sent": trainer.sent, "world_size": trainer.args.world_size}
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:4])
