"""Benchmark: mixtures of sources (``sampleplan.core.mixtures``, NOTE [Mixing algorithms]).

Run from the repository root (or through ``python benchmarks/run.py``)::

    python benchmarks/bench_mixtures.py [--quick]

Eight sources, best of several runs after a warm-up:

- ``mixture-v1``: a page of 1e5 indices at stream position 1e12 (target: at most 10 ms),
  with no replay of the positions before it;
- ``megatron-blend``: building the count checkpoints for 1e9 positions (target: at most
  30 s), then a page of 1e5 indices near position 1e9 (target: at most 50 ms);
- ``hf-interleave``: finding the end of an epoch of about 1e9 positions and its count
  checkpoints (target: at most 30 s, both cores), then a page of 1e5 indices in its
  middle (target: at most 50 ms).

``--quick`` builds 1e8 positions instead of 1e9 (the targets are then scaled by ten).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.timing import best_of  # noqa: E402
from sampleplan.core.mixtures import (  # noqa: E402
    Mixing,
    Mixture,
    MixtureSource,
    mixture_drawer,
)
from sampleplan.core.mixtures.drawers import MixtureV1Drawer  # noqa: E402

WEIGHTS = [0.3, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05, 0.05]
PAGE = 10**5


def _sources(lengths: list[int]) -> tuple[MixtureSource, ...]:
    return tuple(
        MixtureSource(f"s{i}", n, w, "reshuffled")
        for i, (n, w) in enumerate(zip(lengths, WEIGHTS, strict=True))
    )


def rows(quick: bool = False) -> Iterator[dict[str, Any]]:
    positions = 10**8 if quick else 10**9
    scale = positions / 10**9

    v1 = mixture_drawer(Mixture(_sources([10**7] * 8), Mixing(block=1024)))
    assert isinstance(v1, MixtureV1Drawer)
    far = 10**12
    v1.stream_range(far, far + PAGE)
    epoch = far // v1.num_samples_at(0)
    v1.draw_range(epoch, 0, PAGE)
    page, _ = best_of(9, lambda: v1.draw_range(epoch, 0, PAGE))
    yield {
        "name": "mixtures: mixture-v1, a page of 1e5 at position 1e12",
        "value": page * 1e3,
        "unit": "ms",
        "limit": 10.0,
        "note": "8 sources, block 1024, reshuffled orders",
    }

    mixture = Mixture(
        _sources([10**9] * 8), Mixing(algorithm="megatron-blend"), num_samples=positions
    )
    megatron = mixture_drawer(mixture)
    megatron.draw_range(0, 0, 10)  # compiles the kernel
    started, cpu = time.perf_counter(), time.process_time()
    megatron.build_to(positions)  # type: ignore[attr-defined]
    built, cpu = time.perf_counter() - started, time.process_time() - cpu
    yield {
        "name": f"mixtures: megatron-blend, checkpoints for {positions:.0e} positions",
        "value": built,
        "unit": "s",
        "limit": 30.0 * scale,
        "note": f"8 sources, two cores (NOTE [Two-core megatron checkpoints]); CPU {cpu:.1f} s",
    }
    end = positions - PAGE - 1
    megatron.draw_range(0, end, end + PAGE)
    page, _ = best_of(9, lambda: megatron.draw_range(0, end, end + PAGE))
    yield {
        "name": f"mixtures: megatron-blend, a page of 1e5 near position {positions:.0e}",
        "value": page * 1e3,
        "unit": "ms",
        "limit": 50.0,
    }

    # The first source (0.3 of the draws) is exhausted after about `positions` draws.
    lengths = [int(0.3 * positions)] + [10**10] * 7
    hf = mixture_drawer(Mixture(_sources(lengths), Mixing(algorithm="hf-interleave"), seed=1))
    started, cpu = time.perf_counter(), time.process_time()
    length = hf.num_samples_at(0)
    built, cpu = time.perf_counter() - started, time.process_time() - cpu
    yield {
        "name": f"mixtures: hf-interleave, an epoch of {length:.2e} and its checkpoints",
        "value": built,
        "unit": "s",
        "limit": 30.0 * scale,
        "note": f"first_exhausted, 8 sources, both cores; CPU time {cpu:.1f} s",
    }
    middle = length // 2
    hf.draw_range(0, middle, middle + PAGE)
    page, _ = best_of(9, lambda: hf.draw_range(0, middle, middle + PAGE))
    yield {
        "name": "mixtures: hf-interleave, a page of 1e5 mid-epoch",
        "value": page * 1e3,
        "unit": "ms",
        "limit": 50.0,
    }


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    for row in rows(quick):
        limit = f"  (target <= {row['limit']} {row['unit']})" if "limit" in row else ""
        print(f"{row['name']}: {row['value']:.4g} {row['unit']}{limit}")


if __name__ == "__main__":
    main()
