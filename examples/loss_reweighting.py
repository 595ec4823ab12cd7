"""Loss-based reweighting: samples the model keeps getting wrong are drawn more often.

A small classifier on generated 2-d points, where a few points (the "hard" ones) carry
flipped-looking features. Each batch's per-sample losses go to the run with
``sampler.update_weights(indices, losses, op="ema", alpha=...)``; the next epoch draws
from the updated weights, exactly (``WeightedRandomSampler`` on the run's weights of
that epoch, which the service keeps for ever under the run's id)::

    python examples/loss_reweighting.py --url http://127.0.0.1:8000
    python examples/loss_reweighting.py          # a throwaway service in this process

It prints, per epoch, the hard samples' share of the draws and of the weights: it rises
from their share of the data (5 %) as their losses pull their weights up.
"""

from __future__ import annotations

import argparse
import uuid

import torch
from local_service import service_url
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sampleplan.client import RemoteWeightedSampler, SamplePlanClient


def make_data(n: int, hard: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    points = torch.randn(n, 2, generator=g) + (labels.unsqueeze(1) * 2.0 - 1.0) * 1.5
    is_hard = torch.zeros(n, dtype=torch.bool)
    is_hard[:hard] = True
    # The hard points sit on the other class's side: the model gets them wrong.
    points[:hard] = -points[:hard]
    return points, labels, is_hard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running service; default: start one")
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--hard", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--alpha", type=float, default=0.5)
    args = parser.parse_args()

    points, labels, is_hard = make_data(args.samples, args.hard, seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    per_sample = nn.CrossEntropyLoss(reduction="none")

    with service_url(args.url) as url, SamplePlanClient(url) as api:
        # Uniform to start with: the run's updates decide what is drawn more often.
        plan = api.create_plan(labels=labels.tolist(), strategy="uniform", seed=0)
        run = f"loss-reweighting-{uuid.uuid4().hex[:8]}"
        sampler = RemoteWeightedSampler(plan.id, api, run=run)
        loader = DataLoader(
            TensorDataset(torch.arange(args.samples)), args.batch_size, sampler=sampler
        )
        for epoch in range(args.epochs):
            sampler.set_epoch(epoch)  # sends the last epoch's updates before drawing this one
            drawn = hard_draws = 0
            for (index,) in loader:
                losses = per_sample(model(points[index]), labels[index])
                optimiser.zero_grad()
                losses.mean().backward()
                optimiser.step()
                # Weight = a moving average of the sample's loss (floored so none vanishes).
                sampler.update_weights(
                    index, losses.detach().clamp_min(0.05), op="ema", alpha=args.alpha
                )
                drawn += len(index)
                hard_draws += int(is_hard[index].sum())
            weights = api.run_weights(run, epoch)
            weight_share = float(weights[is_hard.numpy()].sum() / weights.sum())
            print(
                f"epoch {epoch}: hard samples are {hard_draws / drawn:.1%} of the draws "
                f"({weight_share:.1%} of the weights; {args.hard / args.samples:.1%} of the data)"
            )
        sampler.flush_updates()
        after = api.run_weights(run, args.epochs)  # the epoch after the last one trained
        share = float(after[is_hard.numpy()].sum() / after.sum())
        print(f"epoch {args.epochs} would draw hard samples with {share:.1%} of the weights")
        print(f"run {run}: frozen epochs {api.get_run(run).frozen_epochs}")


if __name__ == "__main__":
    main()
