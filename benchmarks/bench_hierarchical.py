"""Benchmark: algorithm ``hierarchical`` (``sampleplan.core.hierarchical``).

Run from the repository root::

    python benchmarks/bench_hierarchical.py               # P = 1e7 and 1e8 (about 2 minutes)
    python benchmarks/bench_hierarchical.py --sizes 1e7   # P = 1e7 only

For each population size P and each path it builds the table once and prints the build
time, the table's bytes (and bytes per sample), the build's peak resident memory above
what the inputs already held, and the time of one page of 1e5 draws at offsets 0, 5e6
and 1e12 (best of 11 after a warm-up; target: at most 20 ms whatever the offset).
"build s" is wall time and "cpu s" the process's CPU time (user + system, so it includes
page faults on fresh memory); on a shared machine the CPU time is the steadier figure.

The paths:

- ``class K=1000``: long-tailed labels in random order, ``inverse_frequency`` weights
  (class first, then a uniform member: the service's common case);
- ``class K=P/10``: many small classes, weights per class;
- ``sample``: a different weight for every sample (the alias table over samples).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.timing import best_of  # noqa: E402
from sampleplan.core.hierarchical import (  # noqa: E402
    ALGORITHM_VERSION,
    HierarchicalTable,
    draw_hierarchical,
)

TARGET_MS = 20.0
PAGE_SIZE = 100_000
REPEAT = 11
OFFSETS = (0, 5_000_000, 10**12)

Inputs = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]


def long_tailed_classes(size: int) -> Inputs:
    """Zipf-like labels over 1000 classes in random order, weights ``1 / count``."""
    rng = np.random.default_rng(20240501)
    codes = np.minimum(rng.zipf(1.3, size), 1000) - 1
    counts = np.bincount(codes, minlength=1000)
    return codes, 1.0 / counts[codes].astype(np.float64)


def many_classes(size: int) -> Inputs:
    """``size / 10`` classes of random sizes in random order, a random weight per class."""
    rng = np.random.default_rng(20240502)
    num_classes = max(1, size // 10)
    codes = rng.integers(0, num_classes, size)
    return codes, rng.random(num_classes)[codes]


def per_sample(size: int) -> Inputs:
    """A different weight for every sample (10% of them zero)."""
    rng = np.random.default_rng(20240503)
    weights = rng.exponential(size=size)
    weights[rng.random(size) < 0.1] = 0.0
    return rng.integers(0, 1000, size), weights


CASES: dict[str, Callable[[int], Inputs]] = {
    "class K=1000": long_tailed_classes,
    "class K=P/10": many_classes,
    "sample": per_sample,
}


def resident_kib(field: str) -> int | None:
    """``VmRSS`` or ``VmHWM`` (peak) of this process, in KiB, where Linux reports them."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_resident() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def run_case(name: str, size: int) -> list[str]:
    codes, weights = CASES[name](size)
    resident_before = resident_kib("VmRSS")
    peak_known = reset_peak_resident()
    began, began_cpu = time.perf_counter(), time.process_time()
    table = HierarchicalTable.build(codes, weights)
    build_s, build_cpu_s = time.perf_counter() - began, time.process_time() - began_cpu
    peak_after = resident_kib("VmHWM")
    if peak_known and resident_before is not None and peak_after is not None:
        peak = f"{(peak_after - resident_before) / 2**20:6.2f} GiB"
    else:
        peak = "   n/a"
    del codes, weights

    pages: list[str] = []
    for offset in OFFSETS:

        def page_at(offset: int = offset) -> npt.NDArray[np.int64]:
            return draw_hierarchical(table, 0, 1, offset, offset + PAGE_SIZE)

        page_at()  # warm-up
        seconds, page = best_of(REPEAT, page_at)
        assert page.shape == (PAGE_SIZE,) and page.min() >= 0 and page.max() < size
        ms = seconds * 1e3
        pages.append(f"{ms:6.2f}{'' if ms <= TARGET_MS else ' !'}")
    return [
        f"{size:.0e}",
        name,
        table.mode,
        f"{build_s:7.2f}",
        f"{build_cpu_s:7.2f}",
        f"{table.nbytes / 2**20:9.1f}",
        f"{table.nbytes / size:5.1f}",
        peak,
        *pages,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e7, 1e8])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    args = parser.parse_args()

    versions = f"numpy {np.__version__}; {platform.machine()}; Python {platform.python_version()}"
    print(f"{ALGORITHM_VERSION}; {versions}")
    target = f"target <= {TARGET_MS:.0f} ms ('!': a miss)"
    print(f"page = {PAGE_SIZE:.0e} draws, best of {REPEAT}; {target}\n")
    header = "P case mode build_s cpu_s table_MiB B/smp build_peak @0_ms @5e6_ms @1e12_ms"
    widths = [5, 12, 6, 7, 7, 9, 5, 10, 7, 7, 8]
    titles = [title.replace("_", " ") for title in header.split()]
    print(" | ".join(title.rjust(w) for title, w in zip(titles, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for size in (int(s) for s in args.sizes):
        for name in args.cases:
            row = run_case(name, size)
            print(
                " | ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)), flush=True
            )


if __name__ == "__main__":
    main()
