"""Two-process DistributedDataParallel training with a weighted sampler from sampleplan.

PyTorch has no distributed weighted sampler: ``RemoteWeightedSampler`` is one. Each rank
takes its rank and the world size from ``torch.distributed`` and gets its shard of one
global weighted draw, dealt as ``DistributedSampler`` deals. Two processes on this
machine, gloo over loopback::

    python examples/ddp.py --url http://127.0.0.1:8000
    python examples/ddp.py                  # starts a throwaway service in this process

Each rank prints how many samples of each class it drew in each epoch.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections import Counter

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from local_service import service_url
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

from sampleplan.client import RemoteWeightedSampler, SamplePlanClient

WORLD_SIZE = 2


def make_dataset(counts: list[int]) -> TensorDataset:
    """Features whose mean depends on the class; labels in a shuffled order."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=generator)]
    features = torch.randn(len(labels), 16, generator=generator) + labels[:, None].float()
    return TensorDataset(features, labels)


def train(
    rank: int, url: str, plan_id: str, port: int, counts: list[int], epochs: int, batch_size: int
) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        dataset = make_dataset(counts)
        with SamplePlanClient(url) as api:
            sampler = RemoteWeightedSampler(
                plan_id, api
            )  # rank and world size from torch.distributed
            loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler)
            model = DistributedDataParallel(nn.Linear(16, len(counts)))
            optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
            for epoch in range(epochs):
                sampler.set_epoch(epoch)
                drawn: Counter[int] = Counter()
                for features, labels in loader:
                    optimiser.zero_grad()
                    loss = nn.functional.cross_entropy(model(features), labels)
                    loss.backward()  # DDP averages gradients across the two ranks here
                    optimiser.step()
                    drawn.update(labels.tolist())
                per_class = ", ".join(f"class {k}: {drawn[k]}" for k in range(len(counts)))
                print(
                    f"rank {rank} epoch {epoch}: {len(sampler)} samples ({per_class}), "
                    f"loss {loss.item():.3f}"
                )
        # Leave together: a rank that tears gloo down while its peer still talks to it
        # can abort the peer at exit.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running sampleplan service (default: start one here)")
    parser.add_argument("--counts", default="900,250,50", help="samples per class")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]

    with service_url(args.url) as url:
        labels = make_dataset(counts).tensors[1]
        with SamplePlanClient(url) as api:
            plan = api.create_plan(labels=labels, strategy="inverse_frequency", seed=0)
        print(f"plan {plan.id[:12]}: {plan.num_samples} draws per epoch, {WORLD_SIZE} ranks")
        mp.spawn(
            train,
            args=(url, plan.id, free_port(), counts, args.epochs, args.batch_size),
            nprocs=WORLD_SIZE,
            join=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
