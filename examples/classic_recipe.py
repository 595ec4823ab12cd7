"""The classic recipe for imbalanced data, with the sampler served by sampleplan.

An ImageFolder-style tree of small generated tensors (``root/<class>/<n>.pt``, classes
sorted and indexed as ``torchvision.datasets.ImageFolder`` does), a 70/30
``random_split``, inverse-frequency weights, and one epoch of training through

    DataLoader(train, batch_size=..., sampler=RemoteWeightedSampler(plan.id, api))

Run it against a service (``sampleplan serve``) or on its own, which starts a throwaway
service in this process::

    python examples/classic_recipe.py --url http://127.0.0.1:8000
    python examples/classic_recipe.py

It prints the class shares before and after balancing, the training loss, and checks that
the batches are exactly those of the recipe written by hand with
``WeightedRandomSampler``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch
from local_service import service_url
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler, random_split

from sampleplan.client import RemoteWeightedSampler, SamplePlanClient

SPLIT_SEED = 42
SEED = 0


class TensorFolder(Dataset[tuple[torch.Tensor, int]]):
    """``root/<class>/<file>.pt``, indexed exactly as ``ImageFolder`` indexes images."""

    def __init__(self, root: Path) -> None:
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples = [
            (path, self.class_to_idx[name])
            for name in self.classes
            for path in sorted((root / name).glob("*.pt"))
        ]
        self.targets = [target for _, target in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[index]
        image: torch.Tensor = torch.load(path, weights_only=True)
        return image, target


def make_folders(root: Path, counts: dict[str, int]) -> None:
    """Small 3x8x8 'images' whose mean depends on the class, so there is something to learn."""
    generator = torch.Generator().manual_seed(1)
    for k, (name, count) in enumerate(sorted(counts.items())):
        (root / name).mkdir(parents=True)
        for n in range(count):
            image = torch.randn(3, 8, 8, generator=generator) + k
            torch.save(image, root / name / f"{n:05d}.pt")


def shares(targets: list[int], classes: list[str]) -> str:
    counts = Counter(targets)
    return ", ".join(f"{name} {counts[i] / len(targets):.0%}" for i, name in enumerate(classes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running sampleplan service (default: start one here)")
    parser.add_argument("--counts", default="600,150,30", help="samples per class: cat,dog,emu")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    counts = dict(zip(("cat", "dog", "emu"), map(int, args.counts.split(",")), strict=True))

    with (
        tempfile.TemporaryDirectory(prefix="sampleplan-folders-") as tmp,
        service_url(args.url) as url,
    ):
        root = Path(tmp)
        make_folders(root, counts)
        dataset = TensorFolder(root)
        train, _val = random_split(
            dataset, [0.7, 0.3], generator=torch.Generator().manual_seed(SPLIT_SEED)
        )

        with SamplePlanClient(url) as api:
            # The plan: the dataset's labels, the same split, inverse-frequency weights.
            ds = api.create_dataset(dataset.targets)
            plan = api.create_plan(
                dataset_id=ds.id,
                strategy="inverse_frequency",
                split={"fractions": [0.7, 0.3], "seed": SPLIT_SEED},
                seed=SEED,
            )
            sampler = RemoteWeightedSampler(plan.id, api)
            loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler)

            model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, len(dataset.classes)))
            optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
            drawn: list[int] = []
            losses = []
            for images, targets in loader:  # one epoch
                optimiser.zero_grad()
                loss = nn.functional.cross_entropy(model(images), targets)
                loss.backward()
                optimiser.step()
                drawn += targets.tolist()
                losses.append(loss.item())

            # The classic recipe, by hand: the same stream, to the bit.
            train_targets = [dataset.targets[i] for i in train.indices]
            class_count = Counter(train_targets)
            weights = torch.tensor(
                [1.0 / class_count[t] for t in train_targets], dtype=torch.float64
            )
            classic = WeightedRandomSampler(
                weights,
                len(weights),
                replacement=True,
                generator=torch.Generator().manual_seed(SEED),
            )
            same = list(sampler) == list(classic)

        print(
            f"plan {plan.id[:12]}: {plan.num_samples} draws per epoch "
            f"from {plan.population_size} samples"
        )
        print(f"training part: {shares(train_targets, dataset.classes)}")
        print(f"one epoch drew: {shares(drawn, dataset.classes)}")
        print(f"loss: first batch {losses[0]:.3f}, last batch {losses[-1]:.3f}")
        print(f"identical to WeightedRandomSampler: {same}")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
