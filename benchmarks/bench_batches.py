"""Benchmark: batch plans (``sampleplan.core.batches``, NOTE [batches-v1]).

Run from the repository root (or through ``python benchmarks/run.py``)::

    python benchmarks/bench_batches.py [--quick]

A population of 1e6 samples in 1000 long-tailed classes, ``m_per_class`` with ``m = 4``
and batches of 256 (64 classes a batch), best of several runs after a warm-up:

- one batch at batch offset 1e6 (target: at most 5 ms): a resumed or sharded job pays
  for its batch only, never for the batches before it;
- a whole epoch of 1e6 samples (3906 batches, target: at most 0.5 s), and the same with
  ``class_quota`` over 8 classes;
- for scale, torch's own ``BatchSampler(RandomSampler(range(1e6)), 256)`` drawn in the
  same run (plain shuffled batches, with no class contract at all), and the ratio.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, RandomSampler

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.timing import best_of  # noqa: E402
from sampleplan.core.batches import BatchTable, batching_from_json  # noqa: E402

BATCH = 256
M_PER_CLASS = {"kind": "m_per_class", "m": 4, "batch_size": BATCH}
QUOTA = {"kind": "class_quota", "quota": {str(c): 32 for c in range(8)}}


def _long_tailed_codes(size: int, num_classes: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    share = 1.0 / np.arange(1, num_classes + 1)
    counts = np.maximum(1, np.floor(share / share.sum() * size)).astype(np.int64)
    counts[0] += size - counts.sum()
    return rng.permutation(np.repeat(np.arange(num_classes), counts))


def _table(codes: np.ndarray, batching: dict[str, Any], num_batches: int) -> BatchTable:
    spec = batching_from_json(batching)
    assert spec is not None
    return BatchTable.build(codes, list(range(int(codes.max()) + 1)), spec, num_batches)


def rows(quick: bool = False) -> Iterator[dict[str, Any]]:
    size = 10**5 if quick else 10**6
    codes = _long_tailed_codes(size, 1000)
    epoch_batches = size // BATCH
    far = 10**6
    table = _table(codes, M_PER_CLASS, 2 * far)
    table.draw(0, 0, [far])
    one, batch = best_of(21, lambda: table.draw(0, 3, [far]))
    assert batch.shape == (1, BATCH)
    yield {
        "name": "batches: one batch of 256 at batch offset 1e6",
        "value": one * 1e3,
        "unit": "ms",
        "limit": 5.0,
        "note": "m_per_class m=4, 1000 classes",
    }

    epoch_table = _table(codes, M_PER_CLASS, epoch_batches)
    everything = np.arange(epoch_batches)
    epoch_table.draw(0, 0, everything)
    ours, _ = best_of(5, lambda: epoch_table.draw(0, 1, everything))
    yield {
        "name": f"batches: an epoch of {size:.0e} samples, batches of 256 (m_per_class)",
        "value": ours,
        "unit": "s",
        "limit": 0.5,
        "note": f"{epoch_batches} batches",
    }
    quota_table = _table(codes, QUOTA, epoch_batches)
    quota, _ = best_of(5, lambda: quota_table.draw(0, 1, everything))
    yield {
        "name": f"batches: an epoch of {size:.0e} samples, batches of 256 (class_quota)",
        "value": quota,
        "unit": "s",
        "limit": 0.5,
        "note": "8 classes x 32",
    }

    generator = torch.Generator().manual_seed(0)
    sampler = BatchSampler(RandomSampler(range(size), generator=generator), BATCH, False)
    plain, _ = best_of(3, lambda: list(sampler))
    yield {
        "name": "batches: torch BatchSampler(RandomSampler), same epoch",
        "value": plain,
        "unit": "s",
        "note": "no class contract; for scale",
    }
    yield {
        "name": "batches: m_per_class epoch / torch BatchSampler epoch",
        "value": ours / plain,
        "unit": "x",
        "note": "below 1: faster than torch's unbalanced batches",
    }


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    for row in rows(quick):
        limit = f"  (target <= {row['limit']} {row['unit']})" if "limit" in row else ""
        print(f"{row['name']}: {row['value']:.4g} {row['unit']}{limit}")


if __name__ == "__main__":
    main()
