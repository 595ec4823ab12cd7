"""Multi-label plans: a plan from 10**6 samples with 3 labels each on average in at most 1 s.

``python benchmarks/bench_labelsets.py [--quick]``, or as part of ``benchmarks/run.py``.

Measured: canonicalising the label sets from CSR parts (offsets and flat label values, as
an Arrow list column holds them) plus preparing, naming and summarising the plan
(``label_reduce`` sum and ``repeat_factor``); and, as the baseline in the same run, the
same class-aware weights computed by hand with torch (``bincount``, a gather and
``index_add_``), which is what users write today.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from benchmarks.timing import best_of
from sampleplan.core.config import PlanConfig
from sampleplan.core.labelsets import label_sets_from_csr, label_sets_from_list
from sampleplan.core.stats import plan_statistics
from sampleplan.service.catalog import build_plan

LABELS = 1000


def make_csr(size: int, seed: int = 0) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Offsets and values of ``size`` label sets: Poisson(3) distinct labels from a long tail."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.poisson(3.4, size), 20)  # about 3 once duplicates go
    offsets = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # Zipf-like label frequencies; a sample's labels distinct and sorted (the usual export).
    raw = rng.zipf(1.3, int(offsets[-1])) % LABELS
    sample = np.repeat(np.arange(size), lengths)
    key = np.unique(sample * LABELS + raw)
    sample, values = key // LABELS, key % LABELS
    offsets[1:] = np.cumsum(np.bincount(sample, minlength=size))
    return offsets, values.astype(np.int64)


def plan_from_csr(
    offsets: npt.NDArray[np.int64], values: npt.NDArray[np.int64], config: PlanConfig
) -> str:
    labels = label_sets_from_csr(offsets, values)
    plan = build_plan(labels, config)
    plan_statistics(plan.prepared)
    return plan.id


def torch_by_hand(offsets: npt.NDArray[np.int64], values: npt.NDArray[np.int64]) -> torch.Tensor:
    """Class-aware weights, sum of 1 / n_c over each sample's labels, in torch."""
    codes = torch.from_numpy(values)
    counts = torch.bincount(codes).to(torch.float64)
    owner = torch.repeat_interleave(
        torch.arange(offsets.shape[0] - 1), torch.from_numpy(np.diff(offsets))
    )
    weights = torch.zeros(offsets.shape[0] - 1, dtype=torch.float64)
    weights.index_add_(0, owner, 1.0 / counts[codes])
    return weights


def rows(quick: bool = False) -> list[dict[str, Any]]:
    size = 100_000 if quick else 1_000_000
    offsets, values = make_csr(size)
    mean = values.shape[0] / size
    torch_s, _ = best_of(3, lambda: torch_by_hand(offsets, values))
    out = []
    for name, config in (
        ("sum", PlanConfig()),
        ("repeat_factor", PlanConfig(strategy="repeat_factor")),
    ):
        seconds, _ = best_of(3, lambda config=config: plan_from_csr(offsets, values, config))
        out.append(
            {
                "name": f"label-set plan ({name}) from {size:.0e} samples, {mean:.2f} labels each",
                "value": seconds,
                "unit": "s",
                "limit": None if quick else 1.0,
                "note": "CSR -> canonical label sets -> weights, id, per-label statistics",
            }
        )
        out.append(
            {
                "name": f"  ratio to class-aware weights by hand in torch ({torch_s:.3f} s)",
                "value": seconds / torch_s,
                "unit": "x",
                "note": "torch computes the weights only; the plan also canonicalises, "
                "hashes and summarises",
            }
        )
    lists = [
        values[a:b].tolist()
        for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)
    ]
    seconds, _ = best_of(1, lambda: build_plan(label_sets_from_list(lists), PlanConfig()).id)
    out.append(
        {
            "name": f"label-set plan (sum) from {size:.0e} JSON-parsed lists",
            "value": seconds,
            "unit": "s",
            "note": "label_sets_from_list (the JSON body's path) then the plan; no target",
        }
    )
    return out


if __name__ == "__main__":
    for row in rows(quick="--quick" in sys.argv[1:]):
        print(row)
