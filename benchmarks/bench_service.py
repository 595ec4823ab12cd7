"""Benchmark: the service end to end, against what a user does locally.

Starts the service in its own process (uvicorn on loopback, SQLite in a temporary
folder), then measures, in one run so that every ratio compares like with like:

* iterating a 1e7-draw epoch with the client, cold (the server draws it) and warm (the
  server has it cached), against iterating a local ``WeightedRandomSampler`` over the
  same weights (targets: 0.3x and 0.15x);
* one page of 1e5 at offset 5e6 of a cold epoch (target: 100 ms);
* creating a plan from 1e7 labels uploaded as binary (target: 1 s);
* the same epoch as JSON, for comparison with the binary transport;
* the server's peak RSS (VmHWM) after a 5e7-label plan with algorithm ``hierarchical``,
  in a fresh server process.

``rows(quick=True)`` divides every size by ten. Run alone with
``python benchmarks/bench_service.py [--quick]``, or through ``benchmarks/run.py``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.server_process import server_process  # noqa: E402
from sampleplan.client import RemoteWeightedSampler, SamplePlanClient  # noqa: E402

SEED = 0


def long_tailed_labels(size: int) -> npt.NDArray[np.int64]:
    """Long-tailed class labels (Zipf, 1000 classes at most): the service's typical input."""
    rng = np.random.default_rng(20240501)
    labels: npt.NDArray[np.int64] = np.minimum(rng.zipf(1.3, size), 1000) - 1
    return labels


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc (not Linux?)")


def timed(fn: Callable[[], Any]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def iterate(values: Iterator[int] | Any) -> None:
    for _ in values:
        pass


def local_sampler_seconds(weights: npt.NDArray[np.float64], draws: int, seed: int) -> float:
    """What users do today: iterate ``WeightedRandomSampler`` (float64 weights, seeded)."""
    import torch
    from torch.utils.data import WeightedRandomSampler

    generator = torch.Generator().manual_seed(seed)
    sampler = WeightedRandomSampler(torch.from_numpy(weights), draws, generator=generator)
    return timed(lambda: iterate(sampler))


def remote_iterator(api: SamplePlanClient, plan_id: str, epoch: int) -> Callable[[], None]:
    """Iterating one epoch through the client's ``RemoteWeightedSampler``."""
    sampler = RemoteWeightedSampler(plan_id, api)
    sampler.set_epoch(epoch)
    return lambda: iterate(sampler)


def epoch_rows(folder: Path, scale: int) -> list[dict[str, Any]]:
    draws = 10_000_000 // scale
    offset, page = 5_000_000 // scale, 100_000 // scale
    labels = long_tailed_labels(draws)
    counts = np.bincount(labels)
    weights = 1.0 / counts[labels].astype(np.float64)
    rows: list[dict[str, Any]] = []
    with (
        server_process(folder, max_page=draws, max_body_bytes=2**31) as (url, _pid),
        SamplePlanClient(url, timeout=600) as api,
    ):
        api.create_dataset(np.arange(8) % 3)  # warm up imports and the database

        began = time.perf_counter()
        dataset = api.create_dataset(labels)
        uploaded = time.perf_counter() - began
        plan = api.create_plan(dataset_id=dataset.id, seed=SEED)
        upload_plan = time.perf_counter() - began
        rows.append(
            {
                "name": f"plan from {draws:.0e} binary labels (upload + create)",
                "value": upload_plan,
                "unit": "s",
                "limit": 1.0,
                "note": f"upload {uploaded:.2f} s, plan {upload_plan - uploaded:.2f} s",
            }
        )

        local = local_sampler_seconds(weights, draws, SEED + 1)
        rows.append(
            {"name": f"local WeightedRandomSampler, {draws:.0e} draws", "value": local, "unit": "s"}
        )
        cold_seconds = timed(remote_iterator(api, plan.id, 1))
        warm_seconds = timed(remote_iterator(api, plan.id, 1))
        rows.append(
            {
                "name": "remote epoch, cold / local",
                "value": cold_seconds / local,
                "unit": "x",
                "limit": 0.3,
                "note": f"{cold_seconds:.2f} s; RemoteWeightedSampler",
            }
        )
        rows.append(
            {
                "name": "remote epoch, warm / local",
                "value": warm_seconds / local,
                "unit": "x",
                "limit": 0.15,
                "note": f"{warm_seconds:.2f} s (epoch cached in the server)",
            }
        )

        page_ms = [
            1000 * timed(lambda e=epoch: api.indices(plan.id, epoch=e, offset=offset, limit=page))
            for epoch in (2, 3, 4)
        ]
        rows.append(
            {
                "name": f"page of {page:.0e} at offset {offset:.0e}, cold epoch",
                "value": statistics.median(page_ms),
                "unit": "ms",
                "limit": 100.0,
                "note": "median of 3 cold epochs: " + ", ".join(f"{t:.0f}" for t in page_ms),
            }
        )

        binary = timed(lambda: api.indices(plan.id, epoch=1))
        as_json = timed(lambda: api.indices(plan.id, epoch=1, binary=False))
        rows.append(
            {
                "name": f"transport of a cached {draws:.0e} epoch, JSON / binary",
                "value": as_json / binary,
                "unit": "x",
                "note": f"binary {binary:.2f} s, JSON {as_json:.2f} s",
            }
        )
    return rows


def memory_rows(folder: Path, scale: int) -> list[dict[str, Any]]:
    size = 50_000_000 // scale
    labels = long_tailed_labels(size).astype(np.int32)
    with (
        server_process(folder, max_body_bytes=2**31, max_labels=size) as (url, pid),
        SamplePlanClient(url, timeout=600, retries=0) as api,
    ):
        idle = peak_rss_mb(pid)
        dataset = api.create_dataset(labels)
        del labels
        plan = api.create_plan(dataset_id=dataset.id, algorithm="hierarchical", seed=SEED)
        note = f"idle {idle:.0f} MB; plan created"
        try:
            api.indices(plan.id, epoch=0, offset=size // 2, limit=100_000)
            note += ", page of 1e5 drawn"
        except Exception as exc:  # reported in the table, not raised: the row still counts
            note += f"; PAGE NOT DRAWN ({type(exc).__name__}: {exc})"
        peak = peak_rss_mb(pid)
    return [
        {
            "name": f"server peak RSS, {size:.0e}-label hierarchical plan",
            "value": peak,
            "unit": "MB",
            "note": note,
        }
    ]


def rows(quick: bool = False) -> list[dict[str, Any]]:
    scale = 10 if quick else 1
    with tempfile.TemporaryDirectory(prefix="sampleplan-bench-") as tmp:
        folder = Path(tmp)
        return epoch_rows(folder, scale) + memory_rows(folder, scale)


if __name__ == "__main__":
    quick = "--quick" in sys.argv[1:]
    for row in rows(quick=quick):
        print(row)
