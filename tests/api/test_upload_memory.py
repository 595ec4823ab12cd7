"""A Parquet upload far larger than its label column: the server spools it and reads the
column only, so its memory grows by about the column, not by the file.

The server runs as a process of its own (``ForkedServer``, ``tests/helpers/servers.py``) so
that its peak resident set (``VmHWM`` in ``/proc``) is its own; the growth is measured from
a reset after a first small upload.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers.servers import ForkedServer

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc"),
    pytest.mark.slow,  # starts a process: `make test-quick` leaves it out
]

ROWS = 400_000
PAYLOAD = 200  # bytes of incompressible payload per row: 80 MB beside a 1.6 MB label column
#: Allowed growth of the server's peak RSS over the upload (13 MB measured with 10**6
#: rows). The label column is 1.6 MB (int32), its codes 0.8 MB; the file is 50 times
#: that, so a server that held the body, or read the whole table, would grow by 80 MB or
#: more.
BOUND_MB = 40


def status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def write_table(path: Path, rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 1000, rows, dtype=np.int32)
    payload = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(PAYLOAD), rows, [None, pa.py_buffer(rng.bytes(rows * PAYLOAD))]
    )
    table = pa.table({"payload": payload, "label": labels})
    pq.write_table(table, path, compression="none", row_group_size=rows // 4)
    return labels


def test_the_server_reads_the_label_column_not_the_file(tmp_path: Path) -> None:
    env = {
        "SAMPLEPLAN_DATABASE_URL": f"sqlite:///{tmp_path / 'memory.sqlite3'}",
        "SAMPLEPLAN_MAX_BODY_BYTES": str(1 << 30),
    }
    server = ForkedServer(env, tmp_path / "server.log").start()
    assert server.process is not None
    pid = server.process.pid
    try:
        small, big = tmp_path / "small.parquet", tmp_path / "big.parquet"
        write_table(small, 10_000, 1)
        labels = write_table(big, ROWS, 2)
        assert big.stat().st_size > 40 * labels.nbytes

        def upload(path: Path) -> httpx.Response:
            with path.open("rb") as body:
                return httpx.post(
                    f"{server.url}/v1/datasets",
                    content=body,  # streamed from the file, in chunks
                    params={"label_column": "label"},
                    headers={"Content-Type": "application/vnd.apache.parquet"},
                    timeout=120,
                )

        # The first upload loads pyarrow's Parquet reader and compiles the kernels.
        assert upload(small).status_code == 201
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        except OSError as exc:  # pragma: no cover - a kernel that refuses it
            pytest.skip(f"cannot reset the peak RSS of the server: {exc}")
        before = status_mb(pid, "VmHWM")
        created = upload(big)
        growth = status_mb(pid, "VmHWM") - before
        assert created.status_code == 201, created.text
        assert created.json()["size"] == ROWS
        assert created.json()["counts"] == np.bincount(labels, minlength=1000).tolist()
        assert growth < BOUND_MB, f"peak RSS grew by {growth:.0f} MB"
    finally:
        server.stop()
