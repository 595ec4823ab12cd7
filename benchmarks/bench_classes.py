"""A plan over a million classes, over HTTP: creating it, reading it, its report, a page.

Issue 22 measured 25-55 s to create such a plan, 2-2.5 GB of server growth and 242 MB of
JSON answered; the targets are at most 10 s, 1 GB and 10 MB. The labels are sent inline
as JSON (as that measurement did): every class once, then as many labels again drawn
uniformly, 2e6 labels over 1e6 classes. Growth is the server's peak resident set after
the requests (VmHWM) over its resident set before them. NOTE [Class tables by the page].
"""

from __future__ import annotations

import json
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


def _rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc (not Linux?)")


def rows(quick: bool = False) -> list[dict[str, Any]]:
    classes = 100_000 if quick else 1_000_000
    rng = np.random.default_rng(22)
    labels = np.concatenate([np.arange(classes), rng.integers(0, classes, classes)])
    body = json.dumps({"labels": labels.tolist()}).encode()
    del labels
    name = f"{classes:.0e}-class plan"
    with tempfile.TemporaryDirectory(prefix="sampleplan-bench-") as tmp:
        database = f"sqlite:///{Path(tmp) / 'classes.sqlite3'}"
        measured = _measure(Path(tmp), database, body, classes)
        # A second server on the same database, which has never seen the plan: its GET
        # and report read it from the database and compute its table.
        with (
            server_process(Path(tmp), database_url=database) as (url, _),
            httpx.Client(base_url=url, timeout=600) as http,
        ):
            began = time.perf_counter()
            http.get(f"/v1/plans/{measured['plan_id']}").raise_for_status()
            cold_get_s = time.perf_counter() - began
            began = time.perf_counter()
            http.get(f"/v1/plans/{measured['plan_id']}/report").raise_for_status()
            cold_report_s = time.perf_counter() - began
    return [
        *measured["rows"],
        {
            "name": f"GET a {name}, on a server that had not read it",
            "value": cold_get_s,
            "unit": "s",
        },
        {
            "name": f"report of a {name}, on a server that had not read it",
            "value": cold_report_s,
            "unit": "s",
        },
    ]


def _measure(folder: Path, database: str, body: bytes, classes: int) -> dict[str, Any]:
    name = f"{classes:.0e}-class plan"
    with (
        server_process(folder, database_url=database) as (url, pid),
        httpx.Client(base_url=url, timeout=600) as http,
    ):
        idle = _rss_mb(pid, "VmRSS")
        began = time.perf_counter()
        created = http.post("/v1/plans", content=body, headers={"content-type": "application/json"})
        create_s = time.perf_counter() - began
        created.raise_for_status()
        plan_id = created.json()["id"]
        began = time.perf_counter()
        got = http.get(f"/v1/plans/{plan_id}")
        get_s = time.perf_counter() - began
        began = time.perf_counter()
        report = http.get(f"/v1/plans/{plan_id}/report")
        report_s = time.perf_counter() - began
        began = time.perf_counter()
        page = http.get(
            f"/v1/plans/{plan_id}/classes", params={"offset": classes // 2, "limit": 10_000}
        )
        page_s = time.perf_counter() - began
        for answer in (got, report, page):
            answer.raise_for_status()
        growth = _rss_mb(pid, "VmHWM") - idle
    rows = [
        {"name": f"create a {name} (JSON labels)", "value": create_s, "unit": "s", "limit": 10.0},
        {
            "name": f"server growth, {name}",
            "value": growth,
            "unit": "MB",
            "limit": 1024.0,
            "note": f"peak over idle ({idle:.0f} MB)",
        },
        {
            "name": f"plan answer, {name}",
            "value": len(created.content) / 1e6,
            "unit": "MB",
            "limit": 10.0,
        },
        {"name": f"GET a {name}", "value": get_s, "unit": "s"},
        {
            "name": f"report of a {name}",
            "value": report_s,
            "unit": "s",
            "note": f"{len(report.content) / 1e6:.1f} MB of HTML",
        },
        {"name": f"a page of 1e4 classes of a {name}", "value": page_s, "unit": "s"},
    ]
    return {"plan_id": plan_id, "rows": rows}


if __name__ == "__main__":
    for row in rows(quick="--quick" in sys.argv[1:]):
        print(row)
