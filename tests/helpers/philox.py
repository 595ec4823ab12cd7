"""Philox4x64-10 in plain Python integers, written from Random123's definition.

The counter-based generator that ``hierarchical-v1`` and ``batches-v1`` are defined on:
their tests rebuild each stream from the text of its NOTE on top of this.
"""

from __future__ import annotations

from collections.abc import Sequence

U64 = 2**64 - 1

_PHILOX_M = (0xD2E7470EE14C6C93, 0xCA5A826395121157)
_PHILOX_W = (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B)


def spec_philox4x64_10(ctr: Sequence[int], key: Sequence[int]) -> tuple[int, int, int, int]:
    """Philox4x64-10 as Random123's ``philox4x64_R(10, ctr, key)``."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for round_ in range(10):
        if round_:
            k0, k1 = (k0 + _PHILOX_W[0]) & U64, (k1 + _PHILOX_W[1]) & U64
        p0, p1 = _PHILOX_M[0] * c0, _PHILOX_M[1] * c2
        c0, c1, c2, c3 = (p1 >> 64) ^ c1 ^ k0, p1 & U64, (p0 >> 64) ^ c3 ^ k1, p0 & U64
    return c0, c1, c2, c3
