"""Benchmark: labels from a Parquet file, 1e8 rows, to a ``hierarchical`` plan.

A Parquet file of 1e8 int32 labels (1000 classes, uniform: the codes then compress
worst) is written once into a temporary folder (about 0.15 GB), then, against a server
in its own process (uvicorn on loopback, SQLite):

* the file POSTed as ``application/vnd.apache.parquet`` with ``label_column``, then a
  ``hierarchical`` plan created on the dataset, timed end to end (target: 15 s);
* the server's peak RSS growth over that, VmHWM minus its RSS before (target: 2 GiB);
* the first page of 1e5 indices of epoch 0 after that (target: 50 ms);
* the same through the client's ``create_dataset_from_file`` (the column read locally,
  sent as raw int32), in a fresh server;
* for scale, what a user does locally in the same run: read the column with pyarrow and
  compute the classic recipe's weights (``1 / count[label]``) with numpy. torch's
  ``WeightedRandomSampler`` itself cannot draw from 1e8 weights (``torch.multinomial``
  takes at most 2**24 categories).

``rows(quick=True)`` divides the size by ten. The file is written and read in chunks,
so the benchmark process itself stays under about 1 GB.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.server_process import server_process  # noqa: E402
from sampleplan.client import SamplePlanClient  # noqa: E402

NUM_CLASSES = 1000
ROW_GROUP = 1 << 22


def write_parquet(path: Path, size: int) -> None:
    """``size`` uniform int32 labels in ``label``, written one row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(20261130)
    schema = pa.schema([("label", pa.int32())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, size, ROW_GROUP):
            count = min(ROW_GROUP, size - start)
            values = rng.integers(0, NUM_CLASSES, count, dtype=np.int32)
            writer.write_table(pa.table({"label": values}, schema=schema))


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc (not Linux?)")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (the machine may be shared)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def local_recipe_seconds(path: Path) -> float:
    """Read the column and compute the classic recipe's per-sample weights, locally."""
    import pyarrow.parquet as pq

    began = time.perf_counter()
    labels = pq.read_table(path, columns=["label"]).column(0).to_numpy()
    counts = np.bincount(labels)
    weights = 1.0 / counts[labels]
    assert weights.shape == labels.shape
    return time.perf_counter() - began


def server_rows(folder: Path, path: Path, size: int, *, via_client: bool) -> list[dict[str, Any]]:
    how = "client create_dataset_from_file" if via_client else "POST Parquet body"
    limits = {
        "max_body_bytes": 2**31,
        "max_labels": size,
        "max_page": 10**6,
        "request_timeout_seconds": 600,
    }
    with (
        server_process(folder, **limits) as (url, pid),
        SamplePlanClient(url, timeout=600, retries=0) as api,
    ):
        api.create_dataset(np.arange(8) % 3)  # warm up imports and the database
        before = rss_mb(pid, "VmRSS")
        cpu_before = cpu_seconds(pid)
        began = time.perf_counter()
        if via_client:
            dataset = api.create_dataset_from_file(path, label_column="label")
        else:
            with path.open("rb") as body:
                response = httpx.post(
                    f"{url}/v1/datasets",
                    params={"label_column": "label"},
                    content=body,
                    headers={"Content-Type": "application/vnd.apache.parquet"},
                    timeout=600,
                )
            response.raise_for_status()
            dataset = api.get_dataset(response.json()["id"])
        uploaded = time.perf_counter() - began
        plan = api.create_plan(dataset_id=dataset.id, algorithm="hierarchical", seed=0)
        total = time.perf_counter() - began
        server_cpu = cpu_seconds(pid) - cpu_before
        page_began = time.perf_counter()
        page = api.indices(plan.id, epoch=0, limit=100_000)
        page_ms = 1000 * (time.perf_counter() - page_began)
        growth = rss_mb(pid, "VmHWM") - before
        assert dataset.size == size and page.shape == (100_000,)
    rows: list[dict[str, Any]] = [
        {
            "name": f"{size:.0e}-row Parquet -> hierarchical plan ({how})",
            "value": total,
            "unit": "s",
            "limit": 15.0,
            "note": f"dataset {uploaded:.2f} s, plan {total - uploaded:.2f} s; "
            f"server CPU {server_cpu:.2f} s (wall time counts a shared machine's load)",
        },
        {
            "name": f"server peak RSS growth, {size:.0e}-row Parquet ({how})",
            "value": growth,
            "unit": "MB",
            "limit": 2048.0,
            "note": f"VmHWM minus VmRSS {before:.0f} MB before the upload",
        },
    ]
    if not via_client:
        rows.append(
            {
                "name": "first page of 1e5 indices after that",
                "value": page_ms,
                "unit": "ms",
                "limit": 50.0,
                "note": "epoch 0, offset 0, binary",
            }
        )
    return rows


def rows(quick: bool = False) -> list[dict[str, Any]]:
    size = 10_000_000 if quick else 100_000_000
    with tempfile.TemporaryDirectory(prefix="sampleplan-bench-tables-") as tmp:
        folder = Path(tmp)
        path = folder / "labels.parquet"
        write_parquet(path, size)
        local = local_recipe_seconds(path)
        out = server_rows(folder, path, size, via_client=False)
        out += server_rows(folder, path, size, via_client=True)
    out.append(
        {
            "name": f"local: read {size:.0e} labels + classic recipe weights",
            "value": local,
            "unit": "s",
            "note": f"end to end / local = {out[0]['value'] / local:.1f}x; "
            f"file {path.name} {size:.0e} rows",
        }
    )
    return out


if __name__ == "__main__":
    for row in rows(quick="--quick" in sys.argv[1:]):
        print(row)
