"""Steps 1 to 3 of NOTE [batches-v1] (shared by batches-v2) in plain Python integers.

Written from the text of ``sampleplan/core/batches.py``, not from its code: the references
of ``tests/core/test_batches.py`` (batches-v1) and ``tests/core/test_batches_v2.py``
(batches-v2) build on these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

M64 = 2**64 - 1
TAG = 0x6261746368657331


def spec_mix(z: int) -> int:
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & M64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def spec_perm(n: int, key: int, x: int) -> int:
    s = math.isqrt(n - 1) + 1 if n > 1 else 1  # the least s with s * s >= n
    y = x
    while True:
        left, right = divmod(y, s)
        for i in range(1, 5):
            f = ((spec_mix(((key + i * 0x9E3779B97F4A7C15) & M64) ^ right) >> 32) * s) >> 32
            left, right = right, (left + f) % s
        y = left * s + right
        if y < n:
            return y


def spec_members(codes: Sequence[int]) -> dict[int, list[int]]:
    members: dict[int, list[int]] = {}
    for position, code in enumerate(codes):
        members.setdefault(code, []).append(position)
    return members
