"""The sequential loops of the mixing algorithms (compiled with numba when it imports).

``blend`` is Megatron-core's ``build_blending_indices`` rule, resumable from any counts
(``blend_counts`` the same rule counting only, for checkpoints);
``count_sources`` counts how many of ``u`` fall in each bin of ``cdf`` (``searchsorted``
``side="right"``), for ``hf-interleave``'s checkpoints. Both keep the float64 operations
of the definitions they implement, in their order (numba does not reassociate without
``fastmath``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from sampleplan.core.jit import NUMBA, compile_kernel


def _blend(
    p: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    first: int,
    stop: int,
    emit_from: int,
    sources: npt.NDArray[np.int64],
    takes: npt.NDArray[np.int64],
) -> None:
    # NOTE [megatron-blend]: at position k the source with the largest
    # p[i] * max(k, 1) - taken[i] (the first on ties), float64.
    n = p.shape[0]
    # The counts as float64 (exact below 2**53): float(counts[i]) without a conversion.
    taken = np.empty(n, dtype=np.float64)
    for i in range(n):
        taken[i] = float(counts[i])
    for k in range(first, stop):
        x = float(k) if k > 1 else 1.0
        best = 0
        best_error = p[0] * x - taken[0]
        for i in range(1, n):
            error = p[i] * x - taken[i]
            if error > best_error:
                best_error = error
                best = i
        if k >= emit_from:
            sources[k - emit_from] = best
            takes[k - emit_from] = counts[best]
        counts[best] += 1
        taken[best] += 1.0


def _blend_counts(
    p: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    first: int,
    every: int,
    out: npt.NDArray[np.int64],
) -> None:
    # NOTE [megatron-blend]'s rule from position `first` with `counts` taken so far, for
    # out.shape[0] spans of `every` positions: out[c] = the counts after span c; `counts`
    # ends as the last. The same choice as _blend, written for speed: the errors first (a
    # loop without a branch), then the first index holding their maximum, which is the
    # first on ties as _blend's strict `>` scan is (the errors are never NaN).
    n = p.shape[0]
    taken = np.empty(n, dtype=np.float64)
    error = np.empty(n, dtype=np.float64)
    for i in range(n):
        taken[i] = float(counts[i])
    k = first
    for c in range(out.shape[0]):
        for _ in range(every):
            x = float(k) if k > 1 else 1.0
            for i in range(n):
                error[i] = p[i] * x - taken[i]
            largest = error[0]
            for i in range(1, n):
                largest = max(largest, error[i])
            best = 0
            while error[best] != largest:
                best += 1
            taken[best] += 1.0
            k += 1
        for i in range(n):
            out[c, i] = np.int64(taken[i])
    for i in range(n):
        counts[i] = np.int64(taken[i])


def _count_sources(
    cdf: npt.NDArray[np.float64], u: npt.NDArray[np.float64], counts: npt.NDArray[np.int64]
) -> None:
    n = cdf.shape[0]
    if n <= 16:
        # searchsorted(side="right") is how many cdf values are <= x: a branchless sum.
        for j in range(u.shape[0]):
            x = u[j]
            lo = 0
            for i in range(n):
                lo += cdf[i] <= x
            counts[lo] += 1
        return
    for j in range(u.shape[0]):
        x = u[j]
        lo, hi = 0, n
        while lo < hi:  # the first index whose cdf is > x (searchsorted side="right")
            mid = (lo + hi) // 2
            if cdf[mid] <= x:
                lo = mid + 1
            else:
                hi = mid
        counts[lo] += 1


def _count_sources_numpy(
    cdf: npt.NDArray[np.float64], u: npt.NDArray[np.float64], counts: npt.NDArray[np.int64]
) -> None:
    counts += np.bincount(np.searchsorted(cdf, u, side="right"), minlength=counts.shape[0])[
        : counts.shape[0]
    ]


blend: Any = compile_kernel(_blend) if NUMBA is not None else _blend
blend_counts: Any = compile_kernel(_blend_counts) if NUMBA is not None else _blend_counts
count_sources: Any = compile_kernel(_count_sources) if NUMBA is not None else _count_sources_numpy


_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _arrange(
    window_keys: npt.NDArray[np.uint64],
    base: npt.NDArray[np.int64],
    counts_before: npt.NDArray[np.int64],
    sources: npt.NDArray[np.int64],
    takes: npt.NDArray[np.int64],
    seen: npt.NDArray[np.int64],
) -> None:
    # NOTE [mixture-v1]: each window's slots (``base``, in source order) are shuffled by
    # Fisher-Yates, t = B-1 .. 1 swapping t with ((mix(k_w ^ t) >> 32) * (t + 1)) >> 32;
    # position t then holds slot perm[t], and a source's takes follow position order.
    nw, block = base.shape
    golden = np.uint64(_GOLDEN)
    m1 = np.uint64(_M1)
    m2 = np.uint64(_M2)
    perm = np.empty(block, dtype=np.int64)
    for w in range(nw):
        for t in range(block):
            perm[t] = t
        for t in range(block - 1, 0, -1):
            z = window_keys[w] ^ np.uint64(t)
            z = z + golden
            z = (z ^ (z >> np.uint64(30))) * m1
            z = (z ^ (z >> np.uint64(27))) * m2
            z = z ^ (z >> np.uint64(31))
            j = np.int64(((z >> np.uint64(32)) * np.uint64(t + 1)) >> np.uint64(32))
            perm[t], perm[j] = perm[j], perm[t]
        for t in range(block):
            s = base[w, perm[t]]
            sources[w * block + t] = s
            takes[w * block + t] = counts_before[w, s] + seen[s]
            seen[s] += 1
        for t in range(block):
            seen[base[w, t]] = 0


def _arrange_numpy(
    window_keys: npt.NDArray[np.uint64],
    base: npt.NDArray[np.int64],
    counts_before: npt.NDArray[np.int64],
    sources: npt.NDArray[np.int64],
    takes: npt.NDArray[np.int64],
    seen: npt.NDArray[np.int64],
) -> None:
    nw, block = base.shape
    rows = np.arange(nw)
    perm = np.tile(np.arange(block, dtype=np.int64), (nw, 1))
    with np.errstate(over="ignore"):
        for t in range(block - 1, 0, -1):
            z = window_keys ^ np.uint64(t)
            z = z + np.uint64(_GOLDEN)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
            z = z ^ (z >> np.uint64(31))
            j = (((z >> np.uint64(32)) * np.uint64(t + 1)) >> np.uint64(32)).astype(np.int64)
            at_t = perm[:, t].copy()
            perm[:, t] = perm[rows, j]
            perm[rows, j] = at_t
    src = np.take_along_axis(base, perm, axis=1)
    order = np.argsort(src, axis=1, kind="stable")
    ordered = np.take_along_axis(src, order, axis=1)
    first = np.zeros_like(ordered)
    change = np.ones_like(ordered, dtype=bool)
    change[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    index = np.tile(np.arange(block, dtype=np.int64), (nw, 1))
    first = np.maximum.accumulate(np.where(change, index, 0), axis=1)
    occ = np.empty_like(src)
    np.put_along_axis(occ, order, index - first, axis=1)
    sources[:] = src.reshape(-1)
    takes[:] = (np.take_along_axis(counts_before, src, axis=1) + occ).reshape(-1)


def _feistel(
    n: npt.NDArray[np.int64],
    keys: npt.NDArray[np.uint64],
    x: npt.NDArray[np.int64],
    round_keys: npt.NDArray[np.uint64],
    out: npt.NDArray[np.int64],
) -> None:
    # NOTE [Keyed permutation], element by element.
    golden = np.uint64(_GOLDEN)
    m1 = np.uint64(_M1)
    m2 = np.uint64(_M2)
    for e in range(x.shape[0]):
        size = n[e]
        if size <= 1:
            out[e] = 0
            continue
        bits = 0
        top = size - 1
        while top > 0:
            bits += 1
            top >>= 1
        half = max(1, (bits + 1) // 2)
        shift = np.uint64(half)
        mask = np.uint64((1 << half) - 1)
        y = np.uint64(x[e])
        while True:
            left = y >> shift
            right = y & mask
            for rk in round_keys:
                z = keys[e] ^ rk ^ right
                z = z + golden
                z = (z ^ (z >> np.uint64(30))) * m1
                z = (z ^ (z >> np.uint64(27))) * m2
                z = z ^ (z >> np.uint64(31))
                left, right = right, left ^ (z & mask)
            y = (left << shift) | right
            if y < np.uint64(size):
                break
        out[e] = np.int64(y)


arrange: Any = compile_kernel(_arrange) if NUMBA is not None else _arrange_numpy
feistel: Any = compile_kernel(_feistel) if NUMBA is not None else None


def _reshuffle(
    lengths: npt.NDArray[np.int64],
    halves: npt.NDArray[np.int64],
    base_keys: npt.NDArray[np.uint64],
    round_keys: npt.NDArray[np.uint64],
    sources: npt.NDArray[np.int64],
    takes: npt.NDArray[np.int64],
    out: npt.NDArray[np.int64],
) -> None:
    # NOTE [Source orders] "reshuffled" and NOTE [Keyed permutation], element by element:
    # pass q = k // n of source i is permuted by the key mix(base_keys[i] ^ q).
    golden = np.uint64(_GOLDEN)
    m1 = np.uint64(_M1)
    m2 = np.uint64(_M2)
    for e in range(takes.shape[0]):
        s = sources[e]
        size = lengths[s]
        if size <= 1:
            out[e] = 0
            continue
        k = takes[e]
        z = base_keys[s] ^ np.uint64(k // size)
        z = z + golden
        z = (z ^ (z >> np.uint64(30))) * m1
        z = (z ^ (z >> np.uint64(27))) * m2
        key = z ^ (z >> np.uint64(31))
        shift = np.uint64(halves[s])
        mask = (np.uint64(1) << shift) - np.uint64(1)
        y = np.uint64(k % size)
        while True:
            left = y >> shift
            right = y & mask
            for rk in round_keys:
                z = key ^ rk ^ right
                z = z + golden
                z = (z ^ (z >> np.uint64(30))) * m1
                z = (z ^ (z >> np.uint64(27))) * m2
                z = z ^ (z >> np.uint64(31))
                left, right = right, left ^ (z & mask)
            y = (left << shift) | right
            if y < np.uint64(size):
                break
        out[e] = np.int64(y)


reshuffle: Any = compile_kernel(_reshuffle) if NUMBA is not None else None


def _extras(
    F: npt.NDArray[np.int64], bits: int, lo_w: int, hi_w: int, out: npt.NDArray[np.int64]
) -> None:
    # NOTE [mixture-v1]'s dyadic tree, level by level, keeping the spans that hold a
    # window end in [lo_w, hi_w]; out[W - lo_w] = E(W). WindowQuotas.extras is its numpy twin.
    S = F.shape[0]
    capacity = 2 * (hi_w - lo_w) + 8
    starts = np.zeros(capacity, dtype=np.int64)
    left = np.zeros((capacity, S), dtype=np.int64)
    right = np.zeros((capacity, S), dtype=np.int64)
    n_starts = np.zeros(capacity, dtype=np.int64)
    n_left = np.zeros((capacity, S), dtype=np.int64)
    n_right = np.zeros((capacity, S), dtype=np.int64)
    middle = np.zeros(S, dtype=np.int64)
    neg_key = np.zeros(S, dtype=np.int64)
    for i in range(S):
        right[0, i] = F[i]
    nodes = 1
    span = np.int64(1) << np.int64(bits)
    sentinel = np.int64(1) << np.int64(62)
    while span > 1:
        m = span >> 1
        count = 0
        for node in range(nodes):
            a = starts[node]
            mid_w = a + m
            odd_count = 0
            for i in range(S):
                e = right[node, i] - left[node, i]
                half = e >> 1
                middle[i] = left[node, i] + half
                if e & 1:
                    odd_count += 1
                    lag = F[i] * mid_w - ((left[node, i] + half) << np.int64(bits))
                    neg_key[i] = -lag
                else:
                    neg_key[i] = sentinel
            order = np.argsort(neg_key, kind="mergesort")
            for t in range(odd_count // 2):
                middle[order[t]] += 1
            for side in range(2):
                child = a if side == 0 else mid_w
                if child <= hi_w and child + m >= lo_w:
                    n_starts[count] = child
                    for i in range(S):
                        n_left[count, i] = left[node, i] if side == 0 else middle[i]
                        n_right[count, i] = middle[i] if side == 0 else right[node, i]
                    count += 1
        starts, n_starts = n_starts, starts
        left, n_left = n_left, left
        right, n_right = n_right, right
        nodes = count
        span = m
    for node in range(nodes):
        a = starts[node]
        if lo_w <= a <= hi_w:
            for i in range(S):
                out[a - lo_w, i] = left[node, i]
        if lo_w <= a + 1 <= hi_w:
            for i in range(S):
                out[a + 1 - lo_w, i] = right[node, i]


extras: Any = compile_kernel(_extras) if NUMBA is not None else None
