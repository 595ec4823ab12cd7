"""Benchmark: runs whose weights change between epochs, on a 1e6-sample plan.

Starts the service in its own process (SQLite in a temporary folder) and measures:

* one update of 1e5 sample weights (``ema``), sent with the client (target: 50 ms);
* the first page (65536 indices, the sampler's first chunk) of the next epoch, which
  freezes it (replaying the update) -- for information;
* the first page of that frozen epoch on a second replica (a fresh process on the same
  database) that has never seen it (target: 100 ms);
* against local torch, in the same run: ``WeightedRandomSampler`` on the same 1e6
  weights up to its first index (it draws the whole epoch first).

``rows(quick=True)`` divides the sizes by ten.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.server_process import server_process  # noqa: E402
from sampleplan.client import SamplePlanClient  # noqa: E402

PAGE = 65536


def local_first_index_seconds(weights: np.ndarray, draws: int) -> float:
    import torch
    from torch.utils.data import WeightedRandomSampler

    began = time.perf_counter()
    sampler = WeightedRandomSampler(
        torch.from_numpy(weights), draws, generator=torch.Generator().manual_seed(1)
    )
    next(iter(sampler))
    return time.perf_counter() - began


def rows(quick: bool = False) -> list[dict[str, Any]]:
    scale = 10 if quick else 1
    size, updated = 1_000_000 // scale, 100_000 // scale
    rng = np.random.default_rng(7)
    labels = np.minimum(rng.zipf(1.3, size), 1000) - 1
    with tempfile.TemporaryDirectory(prefix="sampleplan-bench-runs-") as tmp:
        folder = Path(tmp)
        database = f"sqlite:///{folder / 'runs.sqlite3'}"
        out: list[dict[str, Any]] = []
        with (
            server_process(folder, database_url=database, max_body_bytes=2**30) as (url, _pid),
            SamplePlanClient(url, timeout=600) as api,
        ):
            plan = api.create_plan(dataset_id=api.create_dataset(labels).id, seed=0)
            weights = api.weights(plan.id)
            local = local_first_index_seconds(weights, size)
            runs = ("bench-a", "bench-b", "bench-c", "bench-d")
            for run in runs:
                api.create_run(run, plan.id)
                api.run_indices(run, epoch=0, limit=PAGE)  # epoch 0 is being trained on
            # A trainer sends many updates per epoch; each is 1e5 losses of one step.
            update_ms = []
            for step in range(5):
                indices = rng.choice(size, updated, replace=False)
                losses = rng.random(updated) + 0.1
                began = time.perf_counter()
                api.update_weights(
                    runs[0], indices, losses, epoch=0, step=step, op="ema", alpha=0.3
                )
                update_ms.append(1000 * (time.perf_counter() - began))
            for run in runs[1:]:
                indices = rng.choice(size, updated, replace=False)
                api.update_weights(run, indices, rng.random(updated), epoch=0, op="ema", alpha=0.3)
            out.append(
                {
                    "name": f"update of {updated:.0e} sample weights (ema), {size:.0e}-sample run",
                    "value": statistics.median(update_ms),
                    "unit": "ms",
                    "limit": 50.0,
                    "note": "median of 5 steps: " + ", ".join(f"{t:.0f}" for t in update_ms),
                }
            )
            began = time.perf_counter()
            api.run_indices("bench-a", epoch=1, limit=PAGE)
            freeze_ms = 1000 * (time.perf_counter() - began)
            out.append(
                {
                    "name": f"first page ({PAGE}) of the next epoch, freezing it",
                    "value": freeze_ms,
                    "unit": "ms",
                    "note": "replays the update, stores the epoch's weights",
                }
            )
            for run in runs[1:]:
                api.run_weights(run, 1)  # frozen here, never read on the second replica
        with (
            server_process(folder, database_url=database) as (url, _pid),
            SamplePlanClient(url, timeout=600) as api,
        ):
            api.get_plan(plan.id)  # the plan is prepared; the run's epoch is not
            page_ms = []
            for run in runs[1:]:
                began = time.perf_counter()
                api.run_indices(run, epoch=1, limit=PAGE)
                page_ms.append(1000 * (time.perf_counter() - began))
            page = statistics.median(page_ms)
            out.append(
                {
                    "name": f"first page ({PAGE}) of a frozen {size:.0e}-sample epoch, new replica",
                    "value": page,
                    "unit": "ms",
                    "limit": 100.0,
                    "note": "median of 3 runs: " + ", ".join(f"{t:.0f}" for t in page_ms),
                }
            )
            out.append(
                {
                    "name": "that page / local WeightedRandomSampler's first index",
                    "value": page / (1000 * local),
                    "unit": "x",
                    "note": f"local {1000 * local:.0f} ms on the same weights",
                }
            )
        return out


if __name__ == "__main__":
    for row in rows(quick="--quick" in sys.argv[1:]):
        print(row)
