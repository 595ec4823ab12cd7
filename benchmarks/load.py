"""Load test on loopback, driven by ``wrk`` (a C load generator, in processes of its own).

``make load`` runs ``python benchmarks/load.py``: it starts what it needs (``sampleplan
serve`` on SQLite, replicas on PostgreSQL behind haproxy), measures, stops everything,
and prints one row per scenario with requests per second, p50/p99 latency and the ratio
to the target (at least 1.0 is on target, column ``met``; for latency targets the ratio is
target / measured), and whether every answer was right (column ``exact``). Scenarios:

``page-json`` / ``page-octet`` / ``healthz``
    64 connections for ``--duration`` seconds on a cached page of 1000 indices (JSON,
    and ``Accept: application/octet-stream``, in alternating halves) at 64 offsets in
    turn, and on ``/healthz``.
    A second, short pass with the same load compares every page answered against the
    same page fetched alone (wrk's response hook; ``differ`` in the table).
``floor bare-*`` / ``floor page-*``, ``floor batches-*``, ``floor mixture-*``, ``floor run-*``
    Pages of a warm epoch at random offsets (wrk's Lua draws each request's offset),
    JSON and binary, 64 connections, one worker, against a bare ASGI app
    (``benchmarks/bare_app.py``) on the same server stack answering a body of the same
    size and type; bare app and service alternate (bare, service, five times for each
    type, 2 s each). Four kinds of pages of about 1000 values: a plan's indices, a batch
    plan's batches (32 of 32), a mixture's indices, a run's indices of a frozen epoch.
    A page row's ``x of bare`` is its requests per second over the bare app's: the target
    is 0.5x, with a p99 of at most 50 ms and no failed request. Each row also gives the
    CPU its server used a request (from ``/proc``) and a page row the bare app's over its
    own (``x by CPU``), which moves far less with the machine's load. ``--only floor``
    runs it alone (about four minutes).
``workers-2``
    ``page-json`` against ``sampleplan serve --workers 2``.
``uvloop``
    ``page-json`` against ``sampleplan serve --loop uvloop`` (when uvloop is installed; the
    dev extra installs it): the comparison behind the default asyncio loop.
``fan-out``
    64 ranks (``world_size=64``) fetch their binary shards of one cold epoch of
    ``--fanout-draws`` draws at the same moment, while another process sends 256 small
    requests (``/healthz``, one per connection, at random moments of the first second).
    It checks that the epoch was drawn once (``sampleplan_epoch_draws_total``) and that
    every shard equals ``stream[rank::64]`` of the epoch fetched whole afterwards.
``scale-out-N``
    ``page-json`` through haproxy over N = 1, 2, 3 replicas on one PostgreSQL database
    (``--postgres-url``; skipped when no server answers there).
``writes-sqlite`` / ``writes-postgresql``
    32 connections for ``--duration`` seconds POST small run updates (1 to 20 indices
    each, spread over 8 runs of one plan of 10 000 samples, each with an ``update_id``),
    against ``sampleplan serve`` on SQLite and on PostgreSQL. wrk's Lua counts the 202
    answers (acknowledged updates); afterwards the runs' update counts in the store must
    hold every acknowledged update (at most the 32 in flight when wrk stopped more).

Numbers are per machine and per moment: on a machine shared with other work they are
depressed and noisy; compare rows of one run. ``--quick`` shortens every scenario (the
CI smoke test uses it). Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.balancer import haproxy, haproxy_binary  # noqa: E402
from benchmarks.server_process import free_port, server_process  # noqa: E402

OCTET = "application/octet-stream"
POSTGRES_URL = os.environ.get(
    "SAMPLEPLAN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

#: (requests/s at least, p99 at most in seconds) per scenario, from issue 13.
TARGETS: dict[str, tuple[float | None, float | None]] = {
    "page-json": (1500.0, 0.100),
    "page-octet": (1500.0, None),  # and at least the JSON figure: checked in the note
    "healthz": (3000.0, None),
    "writes-sqlite": (500.0, 0.100),  # from issue 22
    "writes-postgresql": (500.0, 0.100),
}
SCENARIOS = ("pages", "floor", "workers", "uvloop", "fan-out", "scale-out", "writes")
#: The floor scenario's targets: pages at random offsets at least this fraction
#: of a bare ASGI app's requests per second, with at most this p99.
FLOOR_RATIO = 0.5
FLOOR_P99 = 0.050
WRITE_RUNS = 8
WRITE_CONNECTIONS = 32
FANOUT_SECONDS = 1.5
FANOUT_HEALTHZ_P99 = 0.050
PAGE_SIZE = 1000
POPULATION = 10_000
RANKS = 64
PROBES = 256


# -- wrk -------------------------------------------------------------------------------------

# Requests cycle through the paths listed in a file (args[1]). With a folder of expected
# bodies (args[2], files named by page offset), every response is compared with the body
# of its offset (X-Sampleplan-Offset) and mismatches are counted. The `response` hook is
# only defined when checking: wrk reads bodies into Lua only for scripts that define it.
_LUA_COMMON = r"""
local paths = {}
local counter = 0
local threads = {}
mismatches = 0

setup = function(thread)
  table.insert(threads, thread)
end

request = function()
  counter = counter + 1
  return wrk.format(nil, paths[(counter % #paths) + 1])
end

"""

_LUA_INIT = r"""
init = function(args)
  for line in io.lines(args[1]) do table.insert(paths, line) end
end
"""

_LUA_CHECKING = r"""
local expected = {}

init = function(args)
  for line in io.lines(args[1]) do table.insert(paths, line) end
  for line in io.lines(args[2] .. "/offsets") do
    local f = assert(io.open(args[2] .. "/" .. line, "rb"))
    expected[line] = f:read("*a")
    f:close()
  end
end

response = function(status, headers, body)
  local offset = nil
  for name, value in pairs(headers) do
    if string.lower(name) == "x-sampleplan-offset" then offset = value end
  end
  if status ~= 200 or offset == nil or expected[offset] ~= body then
    mismatches = mismatches + 1
  end
end
"""


# Small run updates (1 to 20 indices, random values) to one of the runs listed in args[1]
# (one path per line), each with a unique update_id; 202 answers are counted as
# `acknowledged` through the response hook.
_LUA_UPDATES = r"""
local paths = {}
local threads = {}
local counter = 0
acknowledged = 0

setup = function(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

init = function(args)
  for line in io.lines(args[1]) do table.insert(paths, line) end
  math.randomseed(tid * 7919 + 13)
end

request = function()
  counter = counter + 1
  local n = math.random(1, 20)
  local idx, val = {}, {}
  for i = 1, n do
    idx[i] = tostring(math.random(0, tonumber(args_population) - 1))
    val[i] = string.format("%.3f", 0.5 + math.random() * 1.5)
  end
  local body = '{"epoch":0,"op":"set","indices":[' .. table.concat(idx, ",") ..
    '],"values":[' .. table.concat(val, ",") .. '],"update_id":"w' .. tid .. '-' ..
    counter .. '"}'
  return wrk.format("POST", paths[math.random(1, #paths)],
    {["Content-Type"] = "application/json"}, body)
end

response = function(status, headers, body)
  if status == 202 then acknowledged = acknowledged + 1 end
end

"""


# Pages at random offsets: args[1] is a path ending in "offset=", completed with an offset
# drawn in [0, args[2]] for each request (each thread seeded apart). The bare app of the
# floor scenario gets the same requests, so that wrk's own work is the same for both.
_LUA_RANDOM_OFFSETS = r"""
local threads = {}
local prefix = ""
local last = 0
mismatches = 0

setup = function(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

init = function(args)
  prefix = args[1]
  last = tonumber(args[2])
  math.randomseed(tid * 7919 + 29)
end

request = function()
  return wrk.format(nil, prefix .. math.random(0, last))
end

"""


def _lua_done(counter: str) -> str:
    """wrk's ``done`` hook: the summary, and the threads' ``counter`` summed, as WRKJSON."""
    return r"""
done = function(summary, latency, requests)
  local e = summary.errors
  local n = 0
  for _, t in ipairs(threads) do n = n + (t:get("COUNTER") or 0) end
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"socket_errors":%d,"non_2xx":%d,"COUNTER":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect + e.read + e.write + e.timeout, e.status, n))
end
""".replace("COUNTER", counter)


@dataclass
class WrkResult:
    """What one wrk run reports (latencies in seconds)."""

    requests: int
    seconds: float
    p50: float
    p99: float
    max: float
    socket_errors: int
    non_2xx: int
    #: Pages that differ from the page fetched alone (page scripts).
    mismatches: int = 0
    #: 202 answers (the update script).
    acknowledged: int = 0

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else float("nan")


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed: `make load` installs it (apt-get install wrk)")
    return found


def run_wrk(
    base_url: str,
    paths: Sequence[str],
    folder: Path,
    *,
    connections: int = 64,
    duration: float = 10.0,
    threads: int = 2,
    headers: Sequence[str] = (),
    expected: dict[int, bytes] | None = None,
    script: str | None = None,
    script_args: Sequence[str] | None = None,
) -> WrkResult:
    """``wrk`` over ``paths`` in turn; with ``expected`` (bodies by offset), checking pages;
    with ``script``, that Lua script instead (given the file of ``paths``, or
    ``script_args``)."""
    run = folder / f"wrk-{uuid.uuid4().hex[:8]}"
    run.mkdir()
    (run / "paths").write_text("\n".join(paths) + "\n", encoding="ascii")
    arguments = [str(run / "paths")]
    if script is None and expected is None:
        script = _LUA_COMMON + _LUA_INIT + _lua_done("mismatches")
    elif script is None and expected is not None:
        script = _LUA_COMMON + _LUA_CHECKING + _lua_done("mismatches")
        bodies = run / "expected"
        bodies.mkdir()
        for offset, body in expected.items():
            (bodies / str(offset)).write_bytes(body)
        (bodies / "offsets").write_text("\n".join(map(str, expected)) + "\n", encoding="ascii")
        arguments.append(str(bodies))
    if script_args is not None:
        arguments = list(script_args)
    (run / "script.lua").write_text(script, encoding="utf-8")
    command = [
        wrk_binary(),
        f"-t{max(1, min(threads, connections))}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(run / "script.lua"),
    ]
    for header in headers:
        command += ["-H", header]
    command += [base_url + paths[0], "--", *arguments]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50=data["p50_us"] / 1e6,
        p99=data["p99_us"] / 1e6,
        max=data["max_us"] / 1e6,
        socket_errors=data["socket_errors"],
        non_2xx=data["non_2xx"],
        mismatches=data.get("mismatches", 0),
        acknowledged=data.get("acknowledged", 0),
    )


# -- the table -------------------------------------------------------------------------------


@dataclass
class Row:
    """One scenario's line in the table."""

    scenario: str
    per_second: float | None = None
    p50: float | None = None
    p99: float | None = None
    target: str = ""
    ratio: float | None = None
    ok: bool = True
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.1f}"


def render(rows: Sequence[Row]) -> str:
    # "met": every target of the row reached (ratio >= 1); "exact": the answers were right
    # (no failed request, no page differing from the page fetched alone, one draw).
    header = ("scenario", "req/s", "p50 ms", "p99 ms", "target", "ratio", "met", "exact", "note")
    lines = [
        (
            row.scenario,
            "" if row.per_second is None else f"{row.per_second:.0f}",
            _ms(row.p50),
            _ms(row.p99),
            row.target,
            "" if row.ratio is None else f"{row.ratio:.2f}",
            "" if row.ratio is None else ("yes" if row.ratio >= 1.0 else "NO"),
            "yes" if row.ok else "NO",
            row.note,
        )
        for row in rows
    ]
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(len(header))]
    out = [
        " | ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True))
        for line in [header, *lines]
    ]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


def _ratio(result: WrkResult, rate: float | None, p99: float | None) -> tuple[float | None, str]:
    """The worst of (measured / target rate, target p99 / measured p99), and the target text."""
    ratios: list[float] = []
    text: list[str] = []
    if rate is not None:
        ratios.append(result.per_second / rate)
        text.append(f">= {rate:.0f}/s")
    if p99 is not None:
        ratios.append(p99 / max(result.p99, 1e-9))
        text.append(f"p99 <= {p99 * 1000:.0f} ms")
    return (min(ratios) if ratios else None), ", ".join(text)


def wrk_row(scenario: str, result: WrkResult, checked: WrkResult | None, *, targeted: bool) -> Row:
    rate, p99 = TARGETS.get(scenario, (None, None)) if targeted else (None, None)
    ratio, target = _ratio(result, rate, p99)
    failures = result.socket_errors + result.non_2xx
    notes = [f"{result.requests} requests"]
    if failures:
        notes.append(f"{failures} failed")
    ok = failures == 0
    if checked is not None:
        bad = checked.mismatches + checked.non_2xx + checked.socket_errors
        notes.append(f"{checked.requests} pages checked, {bad} differ")
        ok = ok and bad == 0 and checked.requests > 0
    return Row(
        scenario,
        result.per_second,
        result.p50,
        result.p99,
        target,
        ratio,
        ok,
        "; ".join(notes),
        {"requests": result.requests, "failed": failures},
    )


# -- scenarios -------------------------------------------------------------------------------


def _labels(size: int = POPULATION) -> list[int]:
    rng = random.Random(0)
    return [min(int(rng.expovariate(0.7)), 9) for _ in range(size)]


def warm_page_plan(url: str) -> str:
    """A plan of 10 000 samples whose epoch 0 is drawn and cached; its id."""
    created = httpx.post(f"{url}/v1/plans", json={"labels": _labels(), "seed": 1}, timeout=60)
    created.raise_for_status()
    plan_id: str = created.json()["id"]
    # The whole epoch in one request: drawn and cached (a lone small page would not be).
    httpx.get(f"{url}/v1/plans/{plan_id}/indices", timeout=60).raise_for_status()
    return plan_id


def page_paths(plan_id: str, count: int = 64) -> dict[int, str]:
    rng = random.Random(13)
    offsets = sorted({rng.randrange(0, POPULATION - PAGE_SIZE) for _ in range(count)})
    return {o: f"/v1/plans/{plan_id}/indices?epoch=0&offset={o}&limit={PAGE_SIZE}" for o in offsets}


def pages_alone(url: str, paths: dict[int, str], accept: str | None) -> dict[int, bytes]:
    """Every page fetched by itself, one at a time: what the pages under load must equal."""
    headers = {"Accept": accept} if accept else {}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        bodies = {}
        for offset, path in paths.items():
            response = client.get(path)
            response.raise_for_status()
            bodies[offset] = response.content
    return bodies


def combined(halves: Sequence[WrkResult]) -> WrkResult:
    """Several wrk runs of one scenario as one: counts and seconds add up; p50, p99 and
    max are the largest of the runs' (bounds of the merged distribution's: if no run has
    more than 1% of its requests above x, neither has their union)."""
    return WrkResult(
        requests=sum(h.requests for h in halves),
        seconds=sum(h.seconds for h in halves),
        p50=max(h.p50 for h in halves),
        p99=max(h.p99 for h in halves),
        max=max(h.max for h in halves),
        socket_errors=sum(h.socket_errors for h in halves),
        non_2xx=sum(h.non_2xx for h in halves),
        mismatches=sum(h.mismatches for h in halves),
    )


def page_scenarios(
    url: str,
    folder: Path,
    *,
    duration: float,
    check_seconds: float,
    prefix: str = "",
    passes: int = 2,
) -> list[Row]:
    """``page-json``, ``page-octet`` and ``healthz`` against one service.

    JSON and binary pages are measured in turn, half of ``duration`` each and twice
    (JSON, binary, JSON, binary), so that a machine slowing down or speeding up during
    the run weighs on both alike: the two rows are compared with each other. ``passes``
    sets how many times (the smoke test's one pass checks the same answers).
    """
    plan_id = warm_page_plan(url)
    paths = page_paths(plan_id)
    kinds = (("page-json", None), ("page-octet", OCTET)) if not prefix else (("page-json", None),)
    halves: dict[str, list[WrkResult]] = {name: [] for name, _ in kinds}
    expected = {name: pages_alone(url, paths, accept) for name, accept in kinds}
    for _ in range(passes):
        for name, accept in kinds:
            headers = [f"Accept: {accept}"] if accept else []
            halves[name].append(
                run_wrk(
                    url, list(paths.values()), folder, duration=duration / passes, headers=headers
                )
            )
    rows = []
    for name, accept in kinds:
        headers = [f"Accept: {accept}"] if accept else []
        checked = run_wrk(
            url,
            list(paths.values()),
            folder,
            duration=check_seconds,
            headers=headers,
            expected=expected[name],
        )
        rows.append(wrk_row(prefix + name, combined(halves[name]), checked, targeted=not prefix))
    if not prefix:
        result = run_wrk(url, ["/healthz"], folder, duration=duration)
        rows.append(wrk_row("healthz", result, None, targeted=True))
        json_rate, octet_rate = rows[0].per_second or 0.0, rows[1].per_second or 0.0
        if octet_rate < json_rate:
            rows[1].note += f"; below page-json ({octet_rate / json_rate:.2f}x)"
    return rows


def process_cpu_seconds(pid: int) -> float | None:
    """The CPU time process ``pid`` has used (user and system, all its threads), read
    from ``/proc``; ``None`` where there is no ``/proc`` to read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    # utime and stime, the 14th and 15th fields (the 12th and 13th after the command).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def bare_app_process(
    folder: Path, json_body: bytes, octet_body: bytes
) -> Iterator[tuple[str, int]]:
    """``benchmarks/bare_app.py`` answering these bodies on a free loopback port; its URL
    and its process id."""
    port = free_port()
    (folder / "bare.json").write_bytes(json_body)
    (folder / "bare.octet").write_bytes(octet_body)
    command = [sys.executable, str(ROOT / "benchmarks" / "bare_app.py"), "--port", str(port)]
    command += ["--json", str(folder / "bare.json"), "--octet", str(folder / "bare.octet")]
    url = f"http://127.0.0.1:{port}"
    with (folder / f"bare-{port}.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(url, timeout=2)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("the bare app did not start") from None
                    time.sleep(0.05)
            yield url, process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)


@dataclass
class FloorPages:
    """Pages of one kind for the ``floor`` scenario: its rows' name, the path of its pages
    before the offset, and the largest offset of a whole page."""

    kind: str
    prefix: str
    last: int


#: The kinds of pages the ``floor`` scenario measures, in its order.
FLOOR_KINDS = ("page", "batches", "mixture", "run")

#: Batches of 32 per batch page: 1024 values, the size of an index page.
BATCH_SIZE = 32


def warm_floor_pages(url: str, kinds: Sequence[str] = FLOOR_KINDS) -> list[FloorPages]:
    """For each kind, a plan (or run) of 10 000 samples whose epoch is drawn and cached:
    a plan's indices, a batch plan's batches, a mixture of three sources, a run's frozen
    epoch 1 (its plan's weights changed by an update in epoch 0)."""
    found = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for kind in kinds:
            if kind == "page":
                plan_id = warm_page_plan(url)
                prefix = f"/v1/plans/{plan_id}/indices?epoch=0&limit={PAGE_SIZE}&offset="
                found.append(FloorPages(kind, prefix, POPULATION - PAGE_SIZE))
            elif kind == "batches":
                batching = {"kind": "m_per_class", "m": 4, "batch_size": BATCH_SIZE}
                body = {"labels": _labels(), "seed": 3, "batching": batching}
                plan = client.post("/v1/plans", json=body).raise_for_status().json()
                batches = f"/v1/plans/{plan['id']}/batches"
                client.get(batches, params={"epoch": 0}).raise_for_status()  # drawn whole
                rows = BATCH_SIZE  # a page of 1024 values
                prefix = f"{batches}?epoch=0&limit={rows}&offset="
                found.append(FloorPages(kind, prefix, plan["config"]["num_batches"] - rows))
            elif kind == "mixture":
                sizes = (5000, 3000, 2000)
                datasets = [
                    client.post("/v1/datasets", json={"labels": _labels(n)})
                    .raise_for_status()
                    .json()["id"]
                    for n in sizes
                ]
                sources = [
                    {"name": f"source-{i}", "dataset_id": dataset_id, "weight": weight}
                    for i, (dataset_id, weight) in enumerate(
                        zip(datasets, (0.5, 0.3, 0.2), strict=True)
                    )
                ]
                body = {
                    "sources": sources,
                    "mixing": {"algorithm": "mixture-v1"},
                    "num_samples": POPULATION,
                    "seed": 4,
                }
                plan = client.post("/v1/plans", json=body).raise_for_status().json()
                indices = f"/v1/plans/{plan['id']}/indices"
                client.get(indices, params={"epoch": 0}).raise_for_status()  # drawn whole
                prefix = f"{indices}?epoch=0&limit={PAGE_SIZE}&offset="
                found.append(FloorPages(kind, prefix, POPULATION - PAGE_SIZE))
            elif kind == "run":
                body = {"labels": _labels(), "seed": 5}
                plan = client.post("/v1/plans", json=body).raise_for_status().json()
                run = f"/v1/runs/floor-{uuid.uuid4().hex[:8]}"
                client.put(run, json={"plan_id": plan["id"]}).raise_for_status()
                update = {"epoch": 0, "rank": 0, "step": 0, "op": "mul"}
                update |= {"indices": list(range(0, POPULATION, 7)), "values": [3.0]}
                update["values"] = update["values"] * len(update["indices"])
                client.post(f"{run}/updates", json=update).raise_for_status()
                # Epoch 1 frozen with the update, drawn whole and cached.
                client.get(f"{run}/indices", params={"epoch": 1}).raise_for_status()
                prefix = f"{run}/indices?epoch=1&limit={PAGE_SIZE}&offset="
                found.append(FloorPages(kind, prefix, POPULATION - PAGE_SIZE))
            else:
                raise ValueError(f"no floor pages of kind {kind!r}")
    return found


def floor_scenarios(
    url: str,
    folder: Path,
    *,
    duration: float,
    passes: int = 5,
    kinds: Sequence[str] = FLOOR_KINDS,
    server_pid: int | None = None,
) -> list[Row]:
    """``floor``: pages of a warm epoch at random offsets against a bare ASGI app.

    For each kind of page (:func:`warm_floor_pages`), the bare app
    (``benchmarks/bare_app.py``) runs on the same server stack and answers a body of a
    page's size and type; bare app and service are measured in turn, JSON and binary,
    ``passes`` times over (bare, service, bare, service, ... for each), so that the ratio
    of the two compares like with like on a machine whose speed drifts. A page row's ``x
    of bare`` is its requests per second over the bare app's; the target is 0.5x with a
    p99 of at most 50 ms and no failed request.

    With ``server_pid`` (the service's process), each row also gives the CPU time its
    server used per request (all its threads, from ``/proc``), and a page row the bare
    app's over its own (``x by CPU``): what the ratio would be with each server held to
    one core of its own. The load generator shares the machine's cores with the server,
    and a virtual machine's neighbours take a share that changes from minute to minute,
    so the requests per second move far more than the CPU a request takes; the CPU
    figures tell a change in the service from a change in the machine.
    """
    types = (("json", None), ("octet", OCTET))
    script = _LUA_RANDOM_OFFSETS + _lua_done("mismatches")
    rows = []
    for pages in warm_floor_pages(url, kinds):
        bodies = {}
        for name, accept in types:
            page = httpx.get(
                url + pages.prefix + "0", headers={"Accept": accept or "*/*"}, timeout=60
            )
            page.raise_for_status()
            bodies[name] = page.content
        runs: dict[str, list[WrkResult]] = {}
        cpu: dict[str, float | None] = {}  # CPU seconds by row, None where unknown
        with bare_app_process(folder, bodies["json"], bodies["octet"]) as (bare, bare_pid):
            for _ in range(passes):
                for name, accept in types:
                    headers = [f"Accept: {accept}"] if accept else []
                    for who, base, pid in (("bare", bare, bare_pid), ("page", url, server_pid)):
                        row = f"{who}-{name}"
                        before = None if pid is None else process_cpu_seconds(pid)
                        runs.setdefault(row, []).append(
                            run_wrk(
                                base,
                                [pages.prefix + "0"],
                                folder,
                                duration=duration / passes,
                                headers=headers,
                                script=script,
                                script_args=[pages.prefix, str(pages.last)],
                            )
                        )
                        after = None if pid is None else process_cpu_seconds(pid)
                        used = None if before is None or after is None else after - before
                        spent = cpu.get(row, 0.0)
                        cpu[row] = None if used is None or spent is None else spent + used
        # The plans' index pages keep their rows' first names.
        bare_name = "bare" if pages.kind == "page" else f"bare-{pages.kind}"
        for name, _accept in types:
            bare_result = combined(runs[f"bare-{name}"])
            page_result = combined(runs[f"page-{name}"])
            bare_row = wrk_row(f"floor {bare_name}-{name}", bare_result, None, targeted=False)
            page_row = wrk_row(f"floor {pages.kind}-{name}", page_result, None, targeted=False)
            bare_cpu = _cpu_per_request(cpu.get(f"bare-{name}"), bare_result)
            page_cpu = _cpu_per_request(cpu.get(f"page-{name}"), page_result)
            bare_note = f"bare ASGI app, {len(bodies[name])} B body; "
            if bare_cpu is not None:
                bare_note += f"{bare_cpu * 1e6:.1f} us CPU a request; "
                bare_row.extra["cpu_us"] = bare_cpu * 1e6
            bare_row.note = bare_note + bare_row.note
            of_bare = page_result.per_second / bare_result.per_second
            page_row.target = f">= {FLOOR_RATIO:g}x bare, p99 <= {FLOOR_P99 * 1000:.0f} ms"
            page_row.ratio = min(of_bare / FLOOR_RATIO, FLOOR_P99 / max(page_result.p99, 1e-9))
            page_note = f"{of_bare:.2f}x of bare; "
            if bare_cpu is not None and page_cpu is not None:
                page_note += (
                    f"{page_cpu * 1e6:.1f} us CPU a request, {bare_cpu / page_cpu:.2f}x by CPU; "
                )
                page_row.extra["cpu_us"] = page_cpu * 1e6
                page_row.extra["of_bare_by_cpu"] = bare_cpu / page_cpu
            page_row.note = page_note + "random offsets; " + page_row.note
            page_row.extra["of_bare"] = of_bare
            rows += [bare_row, page_row]
    return rows


def _cpu_per_request(seconds: float | None, result: WrkResult) -> float | None:
    """CPU seconds a request of ``result``'s runs, ``None`` when unknown."""
    if seconds is None or result.requests <= 0:
        return None
    return seconds / result.requests


def draws_total(url: str) -> float:
    """``sampleplan_epoch_draws_total`` summed over algorithms (this process's counter)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^sampleplan_epoch_draws_total\{[^}]*\} (\S+)$", text, re.M)
    )


def _probe(url: str, probes: int, window: float, results: Any, ready: Any, go: Any) -> None:
    """In its own process: ``probes`` connections, one ``/healthz`` each at a random moment
    of the ``window`` seconds after ``go`` is set."""
    import asyncio
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    async def main() -> list[float]:
        streams = [await asyncio.open_connection(host, port) for _ in range(probes)]
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, go.wait, 120)
        began = time.perf_counter()
        rng = random.Random(7)

        async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
            await asyncio.sleep(max(0.0, began + rng.uniform(0, window) - time.perf_counter()))
            sent = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: *(\d+)", head, re.I).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            elapsed = time.perf_counter() - sent
            if not head.startswith(b"HTTP/1.1 200"):
                elapsed = float("inf")
            writer.close()
            return elapsed

        return list(await asyncio.gather(*(one(r, w) for r, w in streams)))

    results.put(asyncio.run(main()))


def fan_out(url: str, folder: Path, *, draws: int) -> Row:
    """64 ranks on one cold epoch at once, 256 small requests meanwhile; see the module doc.

    The ranks are one ``curl --parallel`` process (C, 64 connections opened at once):
    64 Python clients in one process would measure their own interpreter.
    """
    body = {"labels": _labels(), "num_samples": draws, "seed": 2}
    created = httpx.post(f"{url}/v1/plans", json=body, timeout=120)
    created.raise_for_status()
    plan_id = created.json()["id"]
    epoch = random.randrange(1, 2**31)  # cold whatever ran before
    draws_before = draws_total(url)

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    ready, go = context.Event(), context.Event()
    prober = context.Process(target=_probe, args=(url, PROBES, 1.0, results, ready, go))
    prober.start()
    if not ready.wait(60):
        prober.terminate()
        raise RuntimeError("the /healthz prober did not connect")

    shards = folder / f"shards-{epoch}"
    shards.mkdir()
    command = [
        _curl_binary(),
        "--silent",
        "--parallel",
        "--parallel-immediate",
        "--parallel-max",
        str(RANKS),
        "--header",
        f"Accept: {OCTET}",
        "--write-out",
        "%{http_code}\\n",
    ]
    for rank in range(RANKS):
        page = f"{url}/v1/plans/{plan_id}/indices?epoch={epoch}&rank={rank}&world_size={RANKS}"
        command += ["--output", str(shards / f"{rank}.bin"), page]
    began = time.perf_counter()
    go.set()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    seconds = time.perf_counter() - began
    probe_latencies = np.sort(np.asarray(results.get(timeout=120)))
    prober.join(timeout=30)
    drawn = draws_total(url) - draws_before
    statuses = done.stdout.split()

    whole = httpx.get(
        f"{url}/v1/plans/{plan_id}/indices",
        params={"epoch": epoch},
        headers={"Accept": OCTET},
        timeout=300,
    )
    whole.raise_for_status()
    stream = np.frombuffer(whole.content, dtype="<i8")
    padded = np.concatenate([stream, stream[: (-len(stream)) % RANKS]])
    exact = statuses == ["200"] * RANKS and all(
        np.array_equal(np.fromfile(shards / f"{rank}.bin", dtype="<i8"), padded[rank::RANKS])
        for rank in range(RANKS)
    )
    p50 = float(probe_latencies[len(probe_latencies) // 2])
    p99 = float(probe_latencies[min(len(probe_latencies) - 1, int(0.99 * len(probe_latencies)))])
    ok = exact and drawn == 1 and bool(np.isfinite(p99))
    ratio = min(FANOUT_SECONDS / seconds, FANOUT_HEALTHZ_P99 / max(p99, 1e-9))
    return Row(
        "fan-out",
        None,
        p50,
        p99,
        f"all {RANKS} ranks <= {FANOUT_SECONDS} s, /healthz p99 <= 50 ms",
        ratio,
        ok,
        f"{draws:.0e} draws, {RANKS} ranks done in {seconds:.2f} s; epoch drawn "
        f"{drawn:g} time(s); shards {'exact' if exact else 'WRONG'}; "
        f"{PROBES} /healthz during it (p50/p99 columns)",
        {"seconds": seconds, "draws": drawn, "exact": exact},
    )


def _curl_binary() -> str:
    found = shutil.which("curl")
    if found is None:
        raise SystemExit("curl is not installed: `make load` installs it (apt-get install curl)")
    return found


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str | None]:
    """A fresh PostgreSQL database (dropped after), or ``None`` when none answers."""
    import sqlalchemy as sa

    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception:  # no server: the scenario is skipped, loudly
        yield None
        return
    name = f"sampleplan_load_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def scale_out(
    folder: Path, *, replicas: Sequence[int], duration: float, check_seconds: float
) -> list[Row]:
    """``page-json`` through haproxy over 1..N replicas on one PostgreSQL database."""
    if haproxy_binary() is None:
        return [Row("scale-out", ok=False, note="haproxy is not installed (make load installs it)")]
    with postgres_database(POSTGRES_URL) as database_url:
        if database_url is None:
            return [Row("scale-out", ok=False, note=f"no PostgreSQL at {POSTGRES_URL}: NOT RUN")]
        with ExitStack() as stack:
            urls = [
                stack.enter_context(
                    server_process(folder, log_level="info", database_url=database_url)
                )[0]
                for _ in range(max(replicas))
            ]
            plan_id = warm_page_plan(urls[0])
            for url in urls[1:]:  # the same plan, read from the database by every replica
                httpx.get(f"{url}/v1/plans/{plan_id}/indices", timeout=60).raise_for_status()
            paths = page_paths(plan_id)
            expected = pages_alone(urls[0], paths, None)
            rows = []
            for count in replicas:
                backends = [u.removeprefix("http://") for u in urls[:count]]
                with haproxy(backends, folder) as lb:
                    result = run_wrk(lb, list(paths.values()), folder, duration=duration)
                    checked = run_wrk(
                        lb, list(paths.values()), folder, duration=check_seconds, expected=expected
                    )
                rows.append(wrk_row(f"scale-out-{count}", result, checked, targeted=False))
            base = rows[0].per_second or float("nan")
            for row in rows:
                row.note = f"{(row.per_second or 0) / base:.2f}x of 1 replica; " + row.note
            return rows


def write_load(url: str, folder: Path, *, scenario: str, duration: float) -> Row:
    """``writes-*``: 32 connections of small updates over 8 runs; see the module doc."""
    created = httpx.post(f"{url}/v1/plans", json={"labels": _labels(), "seed": 3}, timeout=60)
    created.raise_for_status()
    plan_id = created.json()["id"]
    prefix = f"load-{uuid.uuid4().hex[:8]}"
    runs = [f"{prefix}-{i}" for i in range(WRITE_RUNS)]
    for run_id in runs:
        httpx.put(
            f"{url}/v1/runs/{run_id}", json={"plan_id": plan_id}, timeout=60
        ).raise_for_status()
    script = _LUA_UPDATES.replace("tonumber(args_population)", str(POPULATION))
    script += _lua_done("acknowledged")
    result = run_wrk(
        url,
        [f"/v1/runs/{r}/updates" for r in runs],
        folder,
        connections=WRITE_CONNECTIONS,
        duration=duration,
        script=script,
    )
    acknowledged = result.acknowledged
    stored = sum(int(httpx.get(f"{url}/v1/runs/{r}", timeout=60).json()["updates"]) for r in runs)
    row = wrk_row(scenario, result, None, targeted=True)
    # Every acknowledged update is stored; at most those in flight when wrk stopped more.
    complete = acknowledged <= stored <= acknowledged + WRITE_CONNECTIONS
    row.ok = row.ok and complete and acknowledged > 0
    row.note += (
        f"; {acknowledged} acknowledged, {stored} stored "
        f"({'none lost' if stored >= acknowledged else f'{acknowledged - stored} LOST'})"
    )
    row.extra.update(acknowledged=acknowledged, stored=stored)
    return row


def write_scenarios(folder: Path, *, duration: float) -> list[Row]:
    """``writes-sqlite`` and ``writes-postgresql`` (the latter when a server answers)."""
    rows = []
    with server_process(folder, log_level="warning") as (url, _pid):  # type: ignore[arg-type]
        rows.append(write_load(url, folder, scenario="writes-sqlite", duration=duration))
    with postgres_database(POSTGRES_URL) as database_url:
        if database_url is None:
            rows.append(Row("writes-postgresql", ok=False, note=f"no PostgreSQL at {POSTGRES_URL}"))
        else:
            with server_process(folder, log_level="warning", database_url=database_url) as (
                url,
                _pid,
            ):
                rows.append(
                    write_load(url, folder, scenario="writes-postgresql", duration=duration)
                )
    return rows


def run(
    *,
    duration: float = 10.0,
    check_seconds: float = 2.0,
    fanout_draws: int = 10_000_000,
    replicas: Sequence[int] = (1, 2, 3),
    scenarios: Sequence[str] = SCENARIOS,
    passes: int = 2,
    floor_passes: int = 5,
    floor_kinds: Sequence[str] = FLOOR_KINDS,
) -> list[Row]:
    """Every scenario asked for, each against servers of its own; the table's rows.

    ``passes``: how many times the page scenarios alternate what they compare (each run
    ``duration / passes`` seconds, wrk's whole seconds at least), ``floor_passes`` the
    same for the floor scenario, whose ratios are its result: more, shorter runs, so
    that a machine whose speed drifts weighs on the bare app and the service alike;
    ``floor_kinds``: the kinds of pages the floor scenario measures."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="sampleplan-load-") as tmp:
        folder = Path(tmp)
        settings = {"log_level": "info", "max_page": max(fanout_draws, 10_000_000)}
        if {"pages", "floor", "fan-out"} & set(scenarios):
            with server_process(folder, **settings) as (url, pid):  # type: ignore[arg-type]
                if "pages" in scenarios:
                    rows += page_scenarios(
                        url, folder, duration=duration, check_seconds=check_seconds, passes=passes
                    )
                if "floor" in scenarios:  # before the fan-out fills the epoch cache
                    rows += floor_scenarios(
                        url,
                        folder,
                        duration=duration,
                        passes=floor_passes,
                        kinds=floor_kinds,
                        server_pid=pid,
                    )
                if "fan-out" in scenarios:
                    rows.append(fan_out(url, folder, draws=fanout_draws))
        if "workers" in scenarios:
            with server_process(folder, workers=2, **settings) as (url, _pid):  # type: ignore[arg-type]
                rows += page_scenarios(
                    url, folder, duration=duration, check_seconds=check_seconds, prefix="workers-2 "
                )[:1]
        if "uvloop" in scenarios:
            if importlib.util.find_spec("uvloop") is None:
                rows.append(Row("uvloop page-json", ok=False, note="uvloop is not installed"))
            else:
                loop_settings = {**settings, "event_loop": "uvloop"}
                with server_process(folder, **loop_settings) as (url, _pid):  # type: ignore[arg-type]
                    rows += page_scenarios(
                        url,
                        folder,
                        duration=duration,
                        check_seconds=check_seconds,
                        prefix="uvloop ",
                    )[:1]
        if "scale-out" in scenarios:
            rows += scale_out(
                folder, replicas=replicas, duration=duration, check_seconds=check_seconds
            )
        if "writes" in scenarios:
            rows += write_scenarios(folder, duration=duration)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--fanout-draws", type=int, default=10_000_000)
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        help="run only these scenarios (repeatable)",
    )
    parser.add_argument("--quick", action="store_true", help="1 s runs, 1e6 draws, 2 replicas")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    quick = args.quick
    rows = run(
        duration=1.0 if quick else args.duration,
        check_seconds=1.0 if quick else 2.0,
        fanout_draws=1_000_000 if quick else args.fanout_draws,
        replicas=(1, 2) if quick else (1, 2, 3),
        scenarios=args.only or SCENARIOS,
    )
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=2, default=str))
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
