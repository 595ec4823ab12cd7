"""Metric learning with balanced batches: m samples of each of several classes per batch.

Triplet and contrastive losses need positives in every batch: pytorch-metric-learning's
``MPerClassSampler(labels, m, batch_size)`` is the usual answer. Here the service plans
those batches (``batching={"kind": "m_per_class", "m": 4, "batch_size": 32}``: 8 distinct
classes, 4 samples each), and the loader takes them with

    DataLoader(train, batch_sampler=RemoteBatchSampler(plan.id, api))

A small embedding network learns to separate long-tailed synthetic classes with a
batch-hard triplet loss (written out in torch). Run it against a service or on its own::

    python examples/balanced_batches.py --url http://127.0.0.1:8000
    python examples/balanced_batches.py

It prints how every batch was made up, the loss per epoch, and checks that a loader
restored from a mid-epoch checkpoint gives exactly the batches it had not given yet.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import torch
from local_service import service_url
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sampleplan.client import RemoteBatchSampler, SamplePlanClient


def long_tailed_points(
    num_classes: int, largest: int, dim: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian clusters, class ``c`` with about ``largest / (c + 1)`` points (at least 4)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=generator) * 2.0
    points, labels = [], []
    for c in range(num_classes):
        n = max(4, largest // (c + 1))
        points.append(centres[c] + torch.randn(n, dim, generator=generator))
        labels += [c] * n
    return torch.cat(points), torch.tensor(labels)


def batch_hard_triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float
) -> torch.Tensor:
    """Hermans et al. (2017): each anchor's farthest positive against its nearest negative."""
    distances = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    hardest_positive = (distances * same).max(dim=1).values
    hardest_negative = distances.masked_fill(same, float("inf")).min(dim=1).values
    return torch.relu(hardest_positive - hardest_negative + margin).mean()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running sampleplan service; default: start one here")
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--largest", type=int, default=200, help="points of the largest class")
    parser.add_argument("--m", type=int, default=4, help="samples of each class per batch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    points, labels = long_tailed_points(args.classes, args.largest, dim=16, seed=0)
    data = TensorDataset(points, labels)
    print(f"{len(labels)} points; class sizes {Counter(labels.tolist()).most_common()}")

    with service_url(args.url) as url, SamplePlanClient(url) as api:
        batching = {"kind": "m_per_class", "m": args.m, "batch_size": args.batch_size}
        # batches-v2: no sample twice in a class's group, appearances within one per epoch.
        plan = api.create_plan(
            labels=labels.tolist(),
            batching=batching,
            seed=0,
            definitions={"batches": "batches-v2"},
        )
        sampler = RemoteBatchSampler(plan.id, api)
        loader = DataLoader(data, batch_sampler=sampler)
        print(f"plan {plan.id[:12]}…: {len(sampler)} batches of {sampler.batch_size} per epoch")

        model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 8))
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
        classes_per_batch = args.batch_size // args.m
        every_batch_ok = True
        for epoch in range(args.epochs):
            sampler.set_epoch(epoch)
            total, batches = 0.0, 0
            for x, y in loader:
                made_up = Counter(y.tolist())
                every_batch_ok &= len(made_up) == classes_per_batch and set(made_up.values()) == {
                    args.m
                }
                loss = batch_hard_triplet_loss(model(x), y, margin=0.5)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total, batches = total + loss.item(), batches + 1
            print(f"epoch {epoch}: {batches} batches, mean triplet loss {total / batches:.3f}")
        print(f"every batch held {classes_per_batch} classes x {args.m} samples: {every_batch_ok}")

        # Resume: a checkpoint after 3 batches, a new loader, the rest of the epoch.
        sampler.set_epoch(args.epochs)
        iterator = iter(loader)
        seen = [next(iterator)[1] for _ in range(3)]
        state = sampler.state_dict()
        restored = RemoteBatchSampler(plan.id, api)
        restored.load_state_dict(state)
        rest = [y for _, y in DataLoader(data, batch_sampler=restored)]
        whole = api.batches(plan.id, epoch=args.epochs)
        same = [y.tolist() for y in seen + rest] == labels[whole].tolist()
        print(f"resumed after 3 batches, the epoch is the planned one: {same}")
    return 0 if every_batch_ok and same else 1


if __name__ == "__main__":
    sys.exit(main())
