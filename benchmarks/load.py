"""Load test on loopback: concurrent clients on warm pages, and liveness during a cold epoch.

Run from the repository root::

    python benchmarks/load.py                      # starts its own server (SQLite in a temp dir)
    python benchmarks/load.py --url http://127.0.0.1:8000 --token T   # an existing service

Two phases, both bounded by a request count and a time limit:

1. ``--clients`` concurrent clients (64) request pages of a plan whose prepared arrays are
   warm in the service's cache, until ``--requests`` are answered or ``--duration``
   seconds pass; it prints requests per second and p50/p99/max latency.
2. One request that draws a whole cold epoch of ``--cold-draws`` draws (1e7; its
   ``/indices/summary``), while another client polls ``/healthz`` every
   ``--probe-interval`` seconds; it prints how long the cold request took and the health
   probes' p50/p99/max latency. The draw runs in a
   worker thread, so the probes, served on the event loop, should stay fast.

The numbers are the client's view on one machine: the load generator shares the CPU with
the server, so they bound the service from below.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.server_process import server_process  # noqa: E402


@dataclass
class Latencies:
    """Latencies in seconds, with the percentiles the report prints."""

    values: list[float]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.values)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> str:
        return (
            f"p50 {self.quantile(0.50) * 1000:.2f} ms, p99 {self.quantile(0.99) * 1000:.2f} ms, "
            f"max {max(self.values, default=float('nan')) * 1000:.2f} ms"
        )


@dataclass
class Report:
    requests: int
    errors: int
    seconds: float
    page: Latencies
    cold_seconds: float
    cold_status: int
    probes: Latencies

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else float("nan")

    def render(self, clients: int, page_size: int, cold_draws: int) -> str:
        return "\n".join(
            [
                f"warm pages: {clients} clients, {self.requests} requests of {page_size} indices "
                f"in {self.seconds:.2f} s, {self.errors} errors",
                f"  throughput: {self.requests_per_second:.0f} requests/s",
                f"  latency: {self.page.summary()}",
                f"cold epoch: {cold_draws} draws answered {self.cold_status} "
                f"in {self.cold_seconds:.2f} s",
                f"  /healthz meanwhile: {len(self.probes.values)} probes, {self.probes.summary()}",
            ]
        )


@contextmanager
def own_server() -> Iterator[str]:
    """``sampleplan serve`` on a free loopback port, on a throwaway SQLite file."""
    with tempfile.TemporaryDirectory() as tmp, server_process(Path(tmp)) as (url, _pid):
        yield url


async def _warm_pages(
    client: httpx.AsyncClient,
    plan_id: str,
    *,
    clients: int,
    requests: int,
    duration: float,
    page_size: int,
) -> tuple[int, int, float, Latencies]:
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.perf_counter() + duration
    population = 10_000

    async def one_client(seed: int) -> None:
        nonlocal errors, issued
        rng = random.Random(seed)
        while issued < requests and time.perf_counter() < deadline:
            issued += 1
            params = {
                "epoch": 0,
                "offset": rng.randrange(0, population - page_size),
                "limit": page_size,
            }
            began = time.perf_counter()
            try:
                response = await client.get(f"/v1/plans/{plan_id}/indices", params=params)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - began)
            errors += not ok

    began = time.perf_counter()
    await asyncio.gather(*(one_client(seed) for seed in range(clients)))
    return len(latencies), errors, time.perf_counter() - began, Latencies(latencies)


async def _cold_epoch_with_probes(
    client: httpx.AsyncClient, plan_id: str, *, probe_interval: float
) -> tuple[float, int, Latencies]:
    probes: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            began = time.perf_counter()
            await client.get("/healthz")
            probes.append(time.perf_counter() - began)
            await asyncio.sleep(probe_interval)

    async def cold() -> tuple[float, int]:
        # The summary of an epoch nobody asked for yet draws all of it, in a worker thread.
        # (A lone page of a cold epoch would not do: it is drawn on its own, by range; see
        # NOTE [When an epoch is drawn whole] in service/catalog.py.)
        params = {"epoch": random.randrange(1000, 2**31)}
        url = f"/v1/plans/{plan_id}/indices/summary"
        began = time.perf_counter()
        try:
            response = await client.get(url, params=params, timeout=600)
            return time.perf_counter() - began, response.status_code
        finally:
            done.set()

    prober = asyncio.create_task(probe())
    await asyncio.sleep(probe_interval)  # the probes start before the cold request
    seconds, status = await cold()
    await prober
    return seconds, status, Latencies(probes)


async def run(
    url: str,
    *,
    clients: int = 64,
    requests: int = 5_000,
    duration: float = 20.0,
    page_size: int = 1_000,
    cold_draws: int = 10_000_000,
    probe_interval: float = 0.02,
    token: str | None = None,
) -> Report:
    """Both phases against the service at ``url``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60
    ) as client:
        rng = random.Random(0)
        labels = [min(int(rng.expovariate(0.7)), 9) for _ in range(10_000)]
        created = await client.post("/v1/plans", json={"labels": labels, "seed": 1})
        created.raise_for_status()
        plan_id = created.json()["id"]
        await client.get(f"/v1/plans/{plan_id}/indices", params={"limit": page_size})  # warm
        count, errors, seconds, page = await _warm_pages(
            client,
            plan_id,
            clients=clients,
            requests=requests,
            duration=duration,
            page_size=page_size,
        )

        body: dict[str, Any] = {"labels": labels[:1000], "num_samples": cold_draws, "seed": 2}
        big = await client.post("/v1/plans", json=body)
        big.raise_for_status()
        cold_seconds, cold_status, probes = await _cold_epoch_with_probes(
            client, big.json()["id"], probe_interval=probe_interval
        )
    return Report(count, errors, seconds, page, cold_seconds, cold_status, probes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="an already running service (default: start one)")
    parser.add_argument("--token", help="bearer token, if the service needs one")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=5_000, help="most page requests in phase 1")
    parser.add_argument("--duration", type=float, default=20.0, help="most seconds of phase 1")
    parser.add_argument("--page-size", type=int, default=1_000)
    parser.add_argument("--cold-draws", type=int, default=10_000_000)
    parser.add_argument("--probe-interval", type=float, default=0.02)
    args = parser.parse_args(argv)
    options = dict(
        clients=args.clients,
        requests=args.requests,
        duration=args.duration,
        page_size=args.page_size,
        cold_draws=args.cold_draws,
        probe_interval=args.probe_interval,
        token=args.token,
    )
    if args.url:
        report = asyncio.run(run(args.url, **options))  # type: ignore[arg-type]
    else:
        with own_server() as url:
            report = asyncio.run(run(url, **options))  # type: ignore[arg-type]
    print(report.render(args.clients, args.page_size, args.cold_draws))
    return 1 if report.errors or report.cold_status != 200 else 0


if __name__ == "__main__":
    sys.exit(main())
