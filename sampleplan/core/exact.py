"""A fast, bit-exact reproduction of ``torch.multinomial``'s with-replacement stream.

:func:`draw_exact_with_replacement` returns any slice ``[start, stop)`` of::

    torch.multinomial(torch.as_tensor(weights, dtype=torch.float64), N, True,
                      generator=torch.Generator().manual_seed(seed))

for every ``N >= stop`` with ``N > 1``, without torch, more than ten times faster than
torch, and without drawing the ``start`` indices before the slice (the generator skips or
jumps there, in milliseconds). The weights are prepared once into a
:class:`CumulativeTable` and reused for every seed, epoch and page. Large pages are cut in
parts drawn on several cores at once (:func:`configure_parallelism`).

Checked against torch 2.13.0 (CPU), the version the service pins; see NOTE [Why the
stream is torch's, bit for bit] for the argument and ``tests/core/test_exact.py`` for the
evidence (real torch is the oracle there).

Two interchangeable backends compute the same arrays: compiled numba kernels when numba
imports (and is not disabled with ``NUMBA_DISABLE_JIT``), otherwise vectorised numpy.
:data:`BACKEND` names the one in use; ``backend=`` selects one per call.
"""

from __future__ import annotations

import contextvars
import operator
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from sampleplan.core import mt19937
from sampleplan.core.deadlines import check_deadline
from sampleplan.core.jit import NUMBA, compile_kernel

__all__ = [
    "AVAILABLE_BACKENDS",
    "BACKEND",
    "Backend",
    "CumulativeTable",
    "configure_parallelism",
    "draw_exact_with_replacement",
    "warm_up",
]

Backend = Literal["numba", "numpy"]
GuideArray = npt.NDArray[np.int32] | npt.NDArray[np.int64]

# NOTE [Why the stream is torch's, bit for bit]
#     torch's CPU kernel for ``multinomial(w, n, replacement=True)`` with n > 1
#     (``multinomial_with_replacement_apply`` in aten/src/ATen/native/cpu/
#     MultinomialKernel.cpp) does, in float64:
#
#       1. ``s = 0; for j: s += w[j]; cum[j] = s`` -- a sequential running sum;
#       2. ``cum[j] /= s`` for every j, then ``cum[K-1] = 1``;
#       3. per draw, one ``uniform_real_distribution<double>(0, 1)``: two consecutive
#          32-bit MT19937 outputs r1, r2 (r1 first) make ``v = r1 << 32 | r2`` and
#          ``u = (v & (2**53 - 1)) * 2**-53``, i.e. ``u = k * 2**-53`` with the 53-bit
#          integer ``k = (r1 & 0x1FFFFF) << 32 | r2``;
#       4. a binary search with the single test ``cum[mid] < u``.
#
#     The generator is ``mt19937(seed)``: init_genrand with ``seed & 0xffffffff``
#     (higher seed bits are ignored), exactly what ``numpy.random.RandomState(int)`` does;
#     we take its state from there and either let numpy's MT19937 produce the raw outputs
#     or ``sampleplan.core.mt19937`` (the same recurrence, vectorised, with jump-ahead).
#
#     We rebuild ``cum`` with ``np.cumsum`` (an accumulate is a left-to-right loop of
#     float64 additions, unlike ``np.sum``'s pairwise reduction) and one in-place
#     division by the same ``s``: the same IEEE operations in the same order, so the same
#     bits. Adding non-negative numbers and dividing by a positive one are monotone under
#     rounding, so ``cum`` is non-decreasing and ``cum[mid] < u`` is monotone in ``mid``:
#     torch's binary search therefore returns the leftmost ``j`` with ``cum[j] >= u``,
#     whatever its midpoints. Any search for that ``j`` that only ever compares
#     ``cum[j] < u`` returns the same integer; ours does no other float arithmetic.
#
#     The guide table (Chen's method) only narrows where we look. With ``M = 2**m``
#     buckets, ``g = k >> (53 - m)`` is exactly ``floor(u * M)``, and
#     ``guide[g] = leftmost j with cum[j] >= g / M`` (``g / M`` is exact too). Since
#     ``g / M <= u < (g + 1) / M``, the answer lies in ``[guide[g], guide[g + 1]]``, and
#     ``cum[guide[g + 1]] >= u`` bounds every scan: the numba kernels walk up from
#     ``guide[g]`` while ``cum[j] < u`` (buckets hold few boundaries, so this beats a
#     bisection), the numpy code bisects. Buckets are at least as many as categories, so
#     a draw usually costs one guide read and one ``cum`` read.
#
#     Edge cases, each checked against torch:
#     * ``u == 0.0`` (k == 0, probability 2**-53) returns index 0 even when ``w[0] == 0``:
#       ``cum[j] < 0.0`` is never true. Zero weights are otherwise never drawn.
#     * Trailing zero weights make ``cum`` plateau at 1.0; ``u < 1`` always, so the first
#       1.0 wins and no trailing zero-weight index is drawn.
#     * A sum that overflows to ``inf`` (finite weights near 1e308) is not rejected by
#       torch: ``cum`` becomes 0.0 before the first infinite partial sum ``F``, NaN from
#       ``F`` on, and 1.0 at ``K-1``. ``cum[mid] < u`` is then ``mid < F and u > 0``, again
#       monotone in ``mid``, so torch returns ``F`` (0 when ``u == 0``). Storing 0.0 before
#       ``F`` and 1.0 from ``F`` on gives the same answers through the ordinary search.
#     * A single draw (n == 1) takes another torch code path (exponential races) and is
#       not this stream; a slice of length 1 here is one element of an n > 1 stream.

_LOW21: Final = 0x1FFFFF
_TWO_POW_M53: Final = 2.0**-53
_SEED_MIN: Final = -(2**63)  # what torch.Generator.manual_seed accepts (as int64 or uint64)
_SEED_LIMIT: Final = 2**64
#: Draws per direct step: words and results stay in L1.
_DIRECT_CHUNK: Final = 1 << 12
#: Draws between two checks of the deadline on the direct path (NOTE [Deadlines]).
_CHECK_EVERY: Final = 1 << 20
#: Tables up to this size are scanned with two branch-free steps first (they sit in L1/L2).
_BRANCH_FREE_MAX_BYTES: Final = 1 << 18
#: Tables smaller than this are searched directly (they stay in L2 anyway).
_PARTITION_MIN_BYTES: Final = 1 << 21
#: Draws per partitioned step (see NOTE [Lookups that walk memory in order]); its scratch
#: is at most 40 MB per thread (sorted words and bin ids), a third of 1e7 categories' table.
_PARTITION_CHUNK: Final = 1 << 22
#: 2**10 bins: fewer leave a bin's slice of the table out of cache, more make the counting
#: sort slower (its counters leave L1); measured best at 1e6 and 1e7 categories.
_PARTITION_BITS: Final = 10
#: Draws per numpy step: bounds the temporaries (about 48 bytes a draw) whatever the slice.
_NUMPY_CHUNK: Final = 1 << 18


def _guide_bits(size: int) -> int:
    """``m`` such that ``M = 2**m`` is the smallest power of two not below ``size``."""
    return max(0, (size - 1).bit_length())


# --- numba kernels -------------------------------------------------------------------
# Plain functions, compiled below when numba is importable. The draw words (53-bit
# integers ``k``) come from ``mt19937.fill_draw_words``; these kernels only search.


def _fill_guide_kernel(cum: npt.NDArray[np.float64], guide: GuideArray) -> None:
    """``guide[g] = leftmost j with cum[j] >= g / M`` for ``g = 0..M`` (a linear merge)."""
    buckets = guide.shape[0] - 1
    step = 1.0 / buckets
    j = 0
    for g in range(buckets + 1):
        threshold = g * step
        while cum[j] < threshold:
            j += 1
        guide[g] = j


def _search_kernel(
    cum: npt.NDArray[np.float64],
    guide: GuideArray,
    shift: int,
    words: npt.NDArray[np.int64],
    out: npt.NDArray[np.int64],
    steps: int,
) -> None:
    """``out[i]`` = the draw of word ``words[i]``, for a table that stays in cache.

    Two passes: all bucket reads, then the scans, so the CPU overlaps the reads of many
    draws. ``steps`` scan steps are taken without branching (cheaper for tables in L1,
    where a mispredicted loop exit costs more than a read); the loop does the rest.
    """
    n = words.shape[0]
    for i in range(n):
        out[i] = guide[words[i] >> shift]
    for i in range(n):
        u = words[i] * _TWO_POW_M53
        j = out[i]
        for _ in range(steps):
            j += cum[j] < u
        while cum[j] < u:
            j += 1
        out[i] = j


def _partitioned_search_kernel(
    cum: npt.NDArray[np.float64],
    guide: GuideArray,
    shift: int,
    bin_bits: int,
    block: npt.NDArray[np.int64],
    ordered: npt.NDArray[np.int64],
    bins: npt.NDArray[np.uint16],
) -> None:
    """Replaces each draw word of ``block`` by its draw, visiting the table in order.

    A stable counting sort by the top ``bin_bits`` bits of the word (``ordered``,
    ``bins`` are scratch of the same length), the searches bin by bin, and the inverse
    permutation, read back in ``block``'s order. See NOTE [Lookups that walk memory in
    order].
    """
    n = block.shape[0]
    count = 1 << bin_bits
    bin_shift = 53 - bin_bits
    starts = np.zeros(count + 1, dtype=np.int64)
    for i in range(n):
        b = block[i] >> bin_shift
        bins[i] = b
        starts[b + 1] += 1
    for b in range(count):
        starts[b + 1] += starts[b]
    cursor = starts[:count].copy()
    for i in range(n):
        b = bins[i]
        ordered[cursor[b]] = block[i]
        cursor[b] += 1
    for t in range(n):
        k = ordered[t]
        u = k * _TWO_POW_M53
        j = np.int64(guide[k >> shift])
        while cum[j] < u:
            j += 1
        ordered[t] = j
    cursor[:] = starts[:count]
    for i in range(n):
        b = bins[i]
        block[i] = ordered[cursor[b]]
        cursor[b] += 1


_compiled_fill_guide: Callable[[npt.NDArray[np.float64], GuideArray], None] | None = None
_compiled_search: Callable[..., None] | None = None
_compiled_partitioned_search: Callable[..., None] | None = None
if NUMBA is not None:
    _compiled_fill_guide = compile_kernel(_fill_guide_kernel)
    _compiled_search = compile_kernel(_search_kernel)
    _compiled_partitioned_search = compile_kernel(_partitioned_search_kernel)

#: The backend used when a call does not choose one.
BACKEND: Final[Backend] = "numba" if NUMBA is not None else "numpy"
#: Every backend this interpreter can run (``"numpy"`` always).
AVAILABLE_BACKENDS: Final[tuple[Backend, ...]] = (
    ("numba", "numpy") if NUMBA is not None else ("numpy",)
)


def _resolve_backend(backend: Backend | None) -> Backend:
    if backend is None:
        return BACKEND
    if backend not in AVAILABLE_BACKENDS:
        raise ValueError(
            f"backend should be one of {AVAILABLE_BACKENDS}, but got backend={backend!r}"
        )
    return backend


# --- the table -----------------------------------------------------------------------


def _fill_guide_numpy(cum: npt.NDArray[np.float64], guide: GuideArray) -> None:
    """The numpy twin of :func:`_fill_guide_kernel`: same definition, chunked queries."""
    buckets = guide.shape[0] - 1
    for first in range(0, buckets + 1, _NUMPY_CHUNK):
        last = min(first + _NUMPY_CHUNK, buckets + 1)
        thresholds = np.arange(first, last, dtype=np.float64)
        thresholds *= 1.0 / buckets  # exact: buckets is a power of two
        guide[first:last] = np.searchsorted(cum, thresholds, side="left")


@dataclass(frozen=True, eq=False)
class CumulativeTable:
    """torch's normalised cumulative weights plus a guide table over them; immutable.

    Build it with :meth:`from_weights` once per weight vector and reuse it for every
    seed, epoch and page. Holds ``size`` float64 values and ``2**ceil(log2(size)) + 1``
    int32 (int64 beyond 2**31 categories) bucket starts.
    """

    cum: npt.NDArray[np.float64]
    guide: GuideArray
    guide_bits: int

    @classmethod
    def from_weights(
        cls, weights: npt.NDArray[np.float64], *, backend: Backend | None = None
    ) -> CumulativeTable:
        """Prepare a 1-d float64 weight vector (non-negative, finite, positive sum).

        The weights must already be float64: converting float32 weights here would hide
        that torch draws a different stream from them. ``backend`` only chooses who
        builds the guide table; every backend builds the same table.
        """
        arr = np.asarray(weights)
        if arr.dtype != np.float64:
            raise TypeError(f"weights should be a float64 array, but got dtype={arr.dtype}")
        if arr.ndim != 1 or arr.shape[0] == 0:
            raise ValueError(f"weights should be a non-empty 1-d array, but got shape={arr.shape}")
        lowest, highest = float(arr.min()), float(arr.max())
        if not (lowest >= 0.0 and highest < np.inf):  # NaN fails the first test
            raise ValueError(
                "weights should be finite and non-negative, "
                f"but got min={lowest!r} and max={highest!r}"
            )
        with np.errstate(over="ignore"):  # an infinite sum is torch's too; handled below
            cum = np.cumsum(arr, dtype=np.float64)
        total = float(cum[-1])
        if not total > 0.0:
            raise ValueError("weights should have a positive sum, but all are zero")
        if total < np.inf:
            np.divide(cum, total, out=cum)
        else:
            # See NOTE [Why the stream is torch's, bit for bit]: the overflowed sum.
            first_infinite = int(np.searchsorted(cum, np.inf, side="left"))
            cum[:first_infinite] = 0.0
            cum[first_infinite:] = 1.0
        cum[-1] = 1.0
        cum.flags.writeable = False

        size = cum.shape[0]
        bits = _guide_bits(size)
        entries = (1 << bits) + 1
        guide: GuideArray = (
            np.empty(entries, dtype=np.int32) if size < 2**31 else np.empty(entries, dtype=np.int64)
        )
        if _resolve_backend(backend) == "numba" and _compiled_fill_guide is not None:
            _compiled_fill_guide(cum, guide)
        else:
            _fill_guide_numpy(cum, guide)
        guide.flags.writeable = False
        return cls(cum=cum, guide=guide, guide_bits=bits)

    @property
    def size(self) -> int:
        """The number of categories."""
        return int(self.cum.shape[0])

    @property
    def nbytes(self) -> int:
        """Memory held by the table's arrays."""
        return int(self.cum.nbytes + self.guide.nbytes)


# --- drawing -------------------------------------------------------------------------


def _generator_for_seed(seed: int) -> np.random.MT19937:
    """MT19937 in the state ``torch.Generator().manual_seed(seed)`` leaves it in."""
    key, pos = mt19937.state_for_seed(seed)
    generator = np.random.MT19937(0)
    generator.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": pos}}
    return generator


# NOTE [Lookups that walk memory in order]
#     A draw reads ``guide[g]`` and ``cum[j]`` at places set by its random word: with a
#     table of 1e6 categories (12 MB) or more, most reads miss the caches, and memory,
#     not arithmetic, sets the speed. So tables of ``_PARTITION_MIN_BYTES`` and more are
#     searched four million draws at a time: a stable counting sort on the word's top 10
#     bits puts the draws in table order (1024 bins, each covering one slice of ``guide``
#     and ``cum``), each bin is searched while its slice is in cache, and the results go
#     back to their places by the inverse permutation, read in the block's order, so that
#     every pass streams. Each word's search is the same function as in the direct path,
#     so the order in which words are searched cannot change any result. Measured here:
#     about a quarter less time than searching in draw order at 1e6 categories, a little
#     less at 1e7, and more for tables that fit in L2 (which are searched directly).

# NOTE [Both cores for one draw]
#     Draw ``i`` of a page uses generator outputs ``2 i`` and ``2 i + 1``, so the page can
#     be cut in parts, each part's generator moved to its first output
#     (``mt19937.advance``: twisting, or a jump polynomial for long distances), and the
#     parts drawn at once: the result is the same array. This pays only for pages of
#     ``_parallel_min_draws`` and more, and takes helper threads only when they are idle
#     (a non-blocking semaphore): a draw never waits for another request's helper, and at
#     most ``threads - 1`` helpers run in the process, whatever the number of requests.


class _Parallelism:
    """How large draws use several cores; changed by :func:`configure_parallelism`."""

    def __init__(self, threads: int, min_draws: int) -> None:
        self.threads = threads
        self.min_draws = min_draws
        self.idle_helpers = threading.BoundedSemaphore(max(1, threads - 1))
        self.pool: ThreadPoolExecutor | None = None
        self.lock = threading.Lock()

    def executor(self) -> ThreadPoolExecutor:
        with self.lock:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(
                    max_workers=max(1, self.threads - 1), thread_name_prefix="exact-draw"
                )
            return self.pool


#: Default threads for one draw: both cores of the machines we run on, no more.
_DEFAULT_THREADS: Final = max(1, min(2, os.cpu_count() or 1))
_DEFAULT_PARALLEL_MIN_DRAWS: Final = 1 << 20
_parallelism = _Parallelism(_DEFAULT_THREADS, _DEFAULT_PARALLEL_MIN_DRAWS)


def _reset_after_fork() -> None:
    # A forked child (a DataLoader worker running the client's offline fallback, say)
    # inherits the pool object but not its threads: work submitted there would never run.
    global _parallelism
    _parallelism = _Parallelism(_parallelism.threads, _parallelism.min_draws)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_after_fork)


def configure_parallelism(
    *, threads: int = _DEFAULT_THREADS, min_draws: int = _DEFAULT_PARALLEL_MIN_DRAWS
) -> None:
    """Sets how many threads one large draw may use, and from which page size.

    ``threads=1`` turns splitting off. Pages shorter than ``min_draws`` always run on the
    calling thread. Helper threads are shared by the whole process (see NOTE [Both cores
    for one draw]); the service calls this once at start-up from its settings.
    """
    global _parallelism
    threads, min_draws = operator.index(threads), operator.index(min_draws)
    if threads < 1:
        raise ValueError(f"threads should be a positive integer, but got threads={threads}")
    if min_draws < 2:
        raise ValueError(f"min_draws should be at least 2, but got min_draws={min_draws}")
    old, _parallelism = _parallelism, _Parallelism(threads, min_draws)
    if old.pool is not None:
        old.pool.shutdown(wait=False)


def _bin_bits(table: CumulativeTable) -> int:
    """Bits of the partition bins for ``table``; 0 searches directly."""
    if table.nbytes < _PARTITION_MIN_BYTES:
        return 0
    return min(_PARTITION_BITS, table.guide_bits)


def _draw_part_numba(
    table: CumulativeTable, key: mt19937.Key, pos: int, out: npt.NDArray[np.int64]
) -> int:
    """Fills ``out`` with the draws from ``(key, pos)`` on this thread; returns ``pos``."""
    assert _compiled_search is not None and _compiled_partitioned_search is not None
    cum, guide, shift = table.cum, table.guide, 53 - table.guide_bits
    n = out.shape[0]
    bin_bits = _bin_bits(table)
    if bin_bits == 0:
        steps = 2 if table.nbytes <= _BRANCH_FREE_MAX_BYTES else 0
        words = np.empty(min(n, _DIRECT_CHUNK), dtype=np.int64)
        for first in range(0, n, _DIRECT_CHUNK):
            if not first % _CHECK_EVERY:
                check_deadline()  # NOTE [Deadlines]
            last = min(first + _DIRECT_CHUNK, n)
            chunk = words[: last - first]
            pos = mt19937.fill_draw_words(key, pos, chunk)
            _compiled_search(cum, guide, shift, chunk, out[first:last], steps)
        return pos
    size = min(n, _PARTITION_CHUNK)
    ordered = np.empty(size, dtype=np.int64)
    bins = np.empty(size, dtype=np.uint16)
    for first in range(0, n, _PARTITION_CHUNK):
        check_deadline()  # NOTE [Deadlines]
        last = min(first + _PARTITION_CHUNK, n)
        block = out[first:last]
        pos = mt19937.fill_draw_words(key, pos, block)
        _compiled_partitioned_search(
            cum, guide, shift, bin_bits, block, ordered[: last - first], bins[: last - first]
        )
    return pos


def _draw_numba(
    table: CumulativeTable,
    generator: np.random.MT19937,
    out: npt.NDArray[np.int64],
    threads: int | None = None,
) -> None:
    """Fills ``out`` from ``generator``'s state and advances it past the draws."""
    state = generator.state["state"]
    key = np.array(state["key"], dtype=np.uint32)
    pos = int(state["pos"])
    config = _parallelism
    n = out.shape[0]
    parts = config.threads if threads is None else threads
    if threads is None and n < config.min_draws:
        parts = 1
    parts = max(1, min(parts, n // 2))
    if parts == 1:
        pos = _draw_part_numba(table, key, pos, out)
    else:
        pos = _draw_split(table, key, pos, out, parts, config)
    generator.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": pos}}


def _draw_split(
    table: CumulativeTable,
    key: mt19937.Key,
    pos: int,
    out: npt.NDArray[np.int64],
    parts: int,
    config: _Parallelism,
) -> int:
    """Draws ``out`` in ``parts`` pieces, on idle helpers where there are; returns ``pos``.

    ``key`` ends in the state after the last draw. See NOTE [Both cores for one draw].
    """
    n = out.shape[0]
    bounds = [n * p // parts for p in range(parts + 1)]
    states: list[tuple[mt19937.Key, int]] = []
    for p in range(parts):
        part_key = key.copy()
        states.append((part_key, mt19937.advance(part_key, pos, 2 * bounds[p])))
    helped: list[tuple[int, Future[int]]] = []
    mine: list[int] = []
    for p in range(1, parts):
        if config.idle_helpers.acquire(blocking=False):
            # In this thread's context: the helper stops at the same deadline.
            future = config.executor().submit(
                contextvars.copy_context().run,
                _helper_part,
                table,
                states[p],
                out[bounds[p] : bounds[p + 1]],
                config,
            )
            helped.append((p, future))
        else:
            mine.append(p)
    final: dict[int, int] = {}
    for p in [0, *mine]:
        part_key, part_pos = states[p]
        final[p] = _draw_part_numba(table, part_key, part_pos, out[bounds[p] : bounds[p + 1]])
    for p, future in helped:
        final[p] = future.result()
    key[:] = states[-1][0]
    return final[parts - 1]


def _helper_part(
    table: CumulativeTable,
    state: tuple[mt19937.Key, int],
    out: npt.NDArray[np.int64],
    config: _Parallelism,
) -> int:
    try:
        return _draw_part_numba(table, state[0], state[1], out)
    finally:
        config.idle_helpers.release()


def _draw_numpy(
    table: CumulativeTable, generator: np.random.MT19937, out: npt.NDArray[np.int64]
) -> None:
    cum, guide = table.cum, table.guide
    shift = np.uint64(53 - table.guide_bits)
    for first in range(0, out.shape[0], _NUMPY_CHUNK):
        check_deadline()  # NOTE [Deadlines]
        last = min(first + _NUMPY_CHUNK, out.shape[0])
        raw: npt.NDArray[np.uint64] = generator.random_raw(2 * (last - first))
        k = raw[0::2] & np.uint64(_LOW21)
        k <<= np.uint64(32)
        k |= raw[1::2]
        del raw
        u = k.astype(np.float64)
        u *= _TWO_POW_M53
        k >>= shift
        bucket = k.view(np.int64)  # < 2**m: fits
        j = guide[bucket].astype(np.int64)
        bucket += 1
        hi = guide[bucket].astype(np.int64)
        # One step settles every bucket holding at most one boundary (most of them);
        # the rest are bisected, all together, on the still-open ones only.
        j += cum[j] < u
        open_ = np.flatnonzero(j < hi)
        left, right, target = j[open_], hi[open_], u[open_]
        while open_.shape[0]:
            mid = (left + right) >> 1
            below = cum[mid] < target
            left = np.where(below, mid + 1, left)
            right = np.where(below, right, mid)
            done = left >= right
            if done.any():
                j[open_[done]] = left[done]
                keep = ~done
                open_, left, right, target = open_[keep], left[keep], right[keep], target[keep]
        out[first:last] = j


def _draw_from_generator(
    table: CumulativeTable,
    generator: np.random.MT19937,
    count: int,
    *,
    backend: Backend | None = None,
    threads: int | None = None,
) -> npt.NDArray[np.int64]:
    """The next ``count`` draws from ``generator``'s current state, advancing it.

    The building block of :func:`draw_exact_with_replacement`; tests use it to replay
    crafted generator states (such as ``u == 0``) through torch and through us.
    ``threads`` forces a number of parts (numba only); ``None`` follows
    :func:`configure_parallelism`.
    """
    out = np.empty(count, dtype=np.int64)
    if count == 0:
        return out
    if _resolve_backend(backend) == "numba":
        _draw_numba(table, generator, out, threads)
    else:
        _draw_numpy(table, generator, out)
    return out


def draw_exact_with_replacement(
    table: CumulativeTable,
    seed: int,
    start: int,
    stop: int,
    *,
    backend: Backend | None = None,
    threads: int | None = None,
) -> npt.NDArray[np.int64]:
    """Draws ``[start, stop)`` of torch's with-replacement multinomial stream, as int64.

    Equal, element for element, to::

        torch.multinomial(weights_f64, N, True,
                          generator=torch.Generator().manual_seed(seed)).numpy()[start:stop]

    for any ``N >= stop`` with ``N > 1`` (``N == 1`` takes another path in torch), where
    ``table = CumulativeTable.from_weights(weights_f64)``. Skipping ``start`` draws
    costs at most a jump of the generator (milliseconds) and no searching; memory beyond
    the result is bounded. Like torch, only the low 32 bits of ``seed`` matter, so
    ``seed + epoch`` may exceed ``2**32``; seeds torch would reject (outside
    ``[-2**63, 2**64)``) are rejected. ``backend`` overrides :data:`BACKEND` for this
    call; ``threads`` the number of parts a numba draw is cut into (``None``: as
    :func:`configure_parallelism` says, for pages that are large enough).
    """
    seed, start, stop = operator.index(seed), operator.index(start), operator.index(stop)
    if not _SEED_MIN <= seed < _SEED_LIMIT:
        raise ValueError(f"seed should be in [-2**63, 2**64) as for torch, but got seed={seed}")
    if not 0 <= start <= stop:
        raise ValueError(
            f"start and stop should satisfy 0 <= start <= stop, but got start={start}, stop={stop}"
        )
    if threads is not None and operator.index(threads) < 1:
        raise ValueError(f"threads should be a positive integer, but got threads={threads}")
    resolved = _resolve_backend(backend)
    generator = _generator_for_seed(seed)
    if start and stop > start:
        if resolved == "numba":
            state = generator.state["state"]
            key = np.array(state["key"], dtype=np.uint32)
            pos = mt19937.advance(key, int(state["pos"]), 2 * start)
            generator.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": pos}}
        else:
            generator.random_raw(2 * start, output=False)
    return _draw_from_generator(table, generator, stop - start, backend=resolved, threads=threads)


def warm_up() -> None:
    """Load (or compile, the first time on a machine) the kernels with tiny draws.

    The first draw in a process pays a fraction of a second to load cached numba kernels
    (seconds to compile them where no cache exists yet); the service does this at
    start-up so no request pays it. Every kernel runs: direct and partitioned search,
    split draws, skip and jump.
    """
    small = CumulativeTable.from_weights(np.array([1.0, 2.0], dtype=np.float64))
    draw_exact_with_replacement(small, 0, 0, 4)
    if BACKEND == "numba":
        draw_exact_with_replacement(small, 0, 3, 9, threads=2)
        large = CumulativeTable.from_weights(np.ones(1 << 18, dtype=np.float64))
        draw_exact_with_replacement(large, 0, 0, 4)
        key, pos = mt19937.state_for_seed(0)
        mt19937.jump(key, pos, 1000)
