"""Benchmark: ``service.core.exact`` against ``torch.multinomial`` (with replacement).

Run from the repository root::

    python benchmarks/bench_exact.py            # the full table (two minutes or so)
    python benchmarks/bench_exact.py --quick    # K = 1e5 and 1e6 only

For every K it prints torch's seconds for N draws, ours (table build and draw separately),
the speed-up (target: at least 5x on the draw), and whether the two streams are identical.
It then times one page of 1e5 draws at offset 5e6, in a fresh process ("cold": imports,
compiled kernels loaded from numba's cache, table built) and warm, against torch's best
way to reach the same page (skip 2 * 5e6 generator outputs with ``uniform_``, then draw).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt

# Importable as a script from anywhere; ``service.core.exact`` is imported late, so that
# the cold-page run measures its import too.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.timing import best_of  # noqa: E402

TARGET = 5.0
PAGE_OFFSET = 5_000_000
PAGE_SIZE = 100_000


def make_weights(size: int) -> npt.NDArray[np.float64]:
    """Inverse-frequency weights of long-tailed labels: the service's typical input."""
    rng = np.random.default_rng(20240501)
    labels = np.minimum(rng.zipf(1.3, size), 1000) - 1
    counts = np.bincount(labels)
    weights: npt.NDArray[np.float64] = 1.0 / counts[labels].astype(np.float64)
    return weights


def torch_draw(weights: npt.NDArray[np.float64], n: int, seed: int) -> npt.NDArray[np.int64]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.multinomial(torch.from_numpy(weights), n, True, generator=generator).numpy()


def torch_page(
    weights: npt.NDArray[np.float64], seed: int, offset: int, size: int
) -> npt.NDArray[np.int64]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    torch.empty(offset, dtype=torch.float64).uniform_(generator=generator)
    drawn = torch.multinomial(torch.from_numpy(weights), size, True, generator=generator)
    return drawn.numpy()


def cold_page(size: int, seed: int) -> dict[str, float]:
    """One page timed in this (fresh) interpreter: import, table, draw."""
    weights = make_weights(size)
    began = time.perf_counter()
    from service.core import exact as fresh

    imported = time.perf_counter()
    table = fresh.CumulativeTable.from_weights(weights)
    built = time.perf_counter()
    fresh.draw_exact_with_replacement(table, seed, PAGE_OFFSET, PAGE_OFFSET + PAGE_SIZE)
    drawn = time.perf_counter()
    return {"import": imported - began, "build": built - imported, "page": drawn - built}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cold-page", type=int, metavar="K", help=argparse.SUPPRESS)
    args = parser.parse_args()
    seed = 2**32 + 7  # a seed + epoch beyond 32 bits, as the service passes them

    if args.cold_page:
        print(json.dumps(cold_page(args.cold_page, seed)))
        return

    import torch

    from service.core import exact

    sizes = [100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000]
    print(
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"exact backend={exact.BACKEND}; torch {torch.__version__}, numpy {np.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    )
    # Compile (or load from numba's cache) before timing.
    exact.draw_exact_with_replacement(exact.CumulativeTable.from_weights(np.ones(3)), 0, 0, 10)

    n = args.draws
    header = (
        f"{'N':>10} {'K':>10} {'backend':>7} {'torch s':>8} {'build s':>8} {'draw s':>7} "
        f"{'speed-up':>8} {'w/ build':>8} {'identical':>9} {'>=5x':>5}"
    )
    print(header)
    print("-" * len(header))
    for size in sizes:
        weights = make_weights(size)
        tables = {}
        build: dict[str, float] = {}
        for backend in exact.AVAILABLE_BACKENDS:
            build[backend], tables[backend] = best_of(
                args.repeat, partial(exact.CumulativeTable.from_weights, weights, backend=backend)
            )
        # Rounds interleave the contenders, so that load from other processes hits all alike.
        draw: dict[str, float] = {name: float("inf") for name in ("torch", *tables)}
        identical = {backend: True for backend in tables}
        for _ in range(args.repeat):
            elapsed, expected = best_of(1, partial(torch_draw, weights, n, seed))
            draw["torch"] = min(draw["torch"], elapsed)
            for backend, table in tables.items():
                elapsed, got = best_of(
                    1,
                    partial(exact.draw_exact_with_replacement, table, seed, 0, n, backend=backend),
                )
                draw[backend] = min(draw[backend], elapsed)
                identical[backend] &= bool(np.array_equal(got, expected))
                del got
            del expected
        for backend in tables:
            ratio = draw["torch"] / draw[backend]
            print(
                f"{n:>10.0e} {size:>10.0e} {backend:>7} {draw['torch']:>8.3f} "
                f"{build[backend]:>8.3f} {draw[backend]:>7.3f} {ratio:>7.1f}x "
                f"{draw['torch'] / (build[backend] + draw[backend]):>7.1f}x "
                f"{'yes' if identical[backend] else 'NO':>9} "
                f"{'yes' if ratio >= TARGET else 'no':>5}"
            )
        del tables

    print()
    print(f"page of {PAGE_SIZE:.0e} draws at offset {PAGE_OFFSET:.0e}")
    for size in sizes:
        weights = make_weights(size)
        table = exact.CumulativeTable.from_weights(weights)
        torch_s, expected = best_of(
            args.repeat, partial(torch_page, weights, seed, PAGE_OFFSET, PAGE_SIZE)
        )
        warm_s, got = best_of(
            args.repeat,
            partial(
                exact.draw_exact_with_replacement, table, seed, PAGE_OFFSET, PAGE_OFFSET + PAGE_SIZE
            ),
        )
        full = torch_draw(weights, PAGE_OFFSET + PAGE_SIZE, seed)[PAGE_OFFSET:]
        same = bool(np.array_equal(got, expected) and np.array_equal(got, full))
        process = subprocess.run(
            [sys.executable, __file__, "--cold-page", str(size)],
            check=True,
            capture_output=True,
            text=True,
        )
        cold = json.loads(process.stdout)
        print(
            f"  K={size:.0e}: torch skip+draw {torch_s:.3f} s (its table built inside); exact warm "
            f"{warm_s:.3f} s (table ready); exact cold: import {cold['import']:.3f} s, "
            f"table (incl. loading the kernels) {cold['build']:.3f} s, page {cold['page']:.3f} s; "
            f"identical {'yes' if same else 'NO'}"
        )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
