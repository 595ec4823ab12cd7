"""A fast, bit-exact reproduction of ``torch.multinomial``'s with-replacement stream.

:func:`draw_exact_with_replacement` returns any slice ``[start, stop)`` of::

    torch.multinomial(torch.as_tensor(weights, dtype=torch.float64), N, True,
                      generator=torch.Generator().manual_seed(seed))

for every ``N >= stop`` with ``N > 1``, without torch, several times faster than torch,
and without drawing the ``start`` indices before the slice (skipping them costs only their
generator outputs). The weights are prepared once into a :class:`CumulativeTable` and
reused for every seed, epoch and page.

Checked against torch 2.13.0 (CPU), the version the service pins; see NOTE [Why the
stream is torch's, bit for bit] for the argument and ``tests/core/test_exact.py`` for the
evidence (real torch is the oracle there).

Two interchangeable backends compute the same arrays: compiled numba kernels when numba
imports (and is not disabled with ``NUMBA_DISABLE_JIT``), otherwise vectorised numpy.
:data:`BACKEND` names the one in use; ``backend=`` selects one per call.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from service.core.jit import NUMBA, compile_kernel

__all__ = [
    "AVAILABLE_BACKENDS",
    "BACKEND",
    "Backend",
    "CumulativeTable",
    "draw_exact_with_replacement",
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
#     or continue the same recurrence in the numba kernel.
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
#     ``cum[guide[g + 1]] >= u`` bounds every scan. Buckets are at least as many as
#     categories, so a draw usually costs two adjacent guide reads and one ``cum`` read.
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

_MT_N: Final = 624
_MT_M: Final = 397
_MT_MATRIX_A: Final = 0x9908B0DF
_MT_UPPER: Final = 0x80000000
_MT_LOWER: Final = 0x7FFFFFFF
_LOW21: Final = 0x1FFFFF
_TWO_POW_M53: Final = 2.0**-53
_SEED_MIN: Final = -(2**63)  # what torch.Generator.manual_seed accepts (as int64 or uint64)
_SEED_LIMIT: Final = 2**64
#: Draws the numba kernel generates before it searches them (its buffers stay in L1/L2).
_KERNEL_BLOCK: Final = 1 << 12
#: Draws per numpy step: bounds the temporaries (about 48 bytes a draw) whatever the slice.
_NUMPY_CHUNK: Final = 1 << 18


def _guide_bits(size: int) -> int:
    """``m`` such that ``M = 2**m`` is the smallest power of two not below ``size``."""
    return max(0, (size - 1).bit_length())


# --- numba kernels -------------------------------------------------------------------
# Plain functions, compiled below when numba is importable. They use only int64 and
# float64 arithmetic; every value fits (k < 2**53, tempering stays below 2**47).


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


def _draw_kernel(
    key: npt.NDArray[np.uint32],
    pos: int,
    cum: npt.NDArray[np.float64],
    guide: GuideArray,
    shift: int,
    out: npt.NDArray[np.int64],
) -> int:
    """Fill ``out`` with draws from the MT19937 state ``(key, pos)``; return the new ``pos``.

    ``key`` is advanced in place. Work goes block by block, in passes without
    data-dependent branches where the memory reads are (the bucket reads, then one
    ``cum`` read per draw), so the CPU overlaps the cache misses of many draws; only
    buckets holding two or more boundaries need the final bisection pass.
    """
    n = out.shape[0]
    words = np.empty(_KERNEL_BLOCK, dtype=np.int64)  # the 53-bit integers k of a block
    ends = np.empty(_KERNEL_BLOCK, dtype=np.int64)  # guide[g + 1] per draw
    for first in range(0, n, _KERNEL_BLOCK):
        count = min(_KERNEL_BLOCK, n - first)
        for i in range(count):
            k = 0
            for _ in range(2):
                if pos == _MT_N:
                    for t in range(_MT_N):
                        y = (int(key[t]) & _MT_UPPER) | (int(key[(t + 1) % _MT_N]) & _MT_LOWER)
                        v = int(key[(t + _MT_M) % _MT_N]) ^ (y >> 1)
                        if y & 1:
                            v ^= _MT_MATRIX_A
                        key[t] = v
                    pos = 0
                y = int(key[pos])
                pos += 1
                y ^= y >> 11
                y ^= (y << 7) & 0x9D2C5680
                y ^= (y << 15) & 0xEFC60000
                y ^= y >> 18
                k = ((k & _LOW21) << 32) | y
            words[i] = k
        for i in range(count):
            g = words[i] >> shift
            out[first + i] = guide[g]
            ends[i] = guide[g + 1]
        for i in range(count):
            j = out[first + i]
            out[first + i] = j + (cum[j] < words[i] * _TWO_POW_M53)
        for i in range(count):
            j = out[first + i]
            hi = ends[i]
            if j < hi:
                u = words[i] * _TWO_POW_M53
                while j < hi:
                    mid = (j + hi) >> 1
                    if cum[mid] < u:
                        j = mid + 1
                    else:
                        hi = mid
                out[first + i] = j
    return pos


_numba: Final = NUMBA
_compiled_fill_guide: Callable[[npt.NDArray[np.float64], GuideArray], None] | None = None
_compiled_draw: Callable[..., int] | None = None
if _numba is not None:
    _compiled_fill_guide = compile_kernel(_numba, _fill_guide_kernel)
    _compiled_draw = compile_kernel(_numba, _draw_kernel)

#: The backend used when a call does not choose one.
BACKEND: Final[Backend] = "numba" if _numba is not None else "numpy"
#: Every backend this interpreter can run (``"numpy"`` always).
AVAILABLE_BACKENDS: Final[tuple[Backend, ...]] = (
    ("numba", "numpy") if _numba is not None else ("numpy",)
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
    # RandomState's integer seeding is init_genrand, as torch's; MT19937(seed) is not.
    seeded = np.random.RandomState(seed & 0xFFFFFFFF).get_state(legacy=False)["state"]
    generator = np.random.MT19937(0)
    generator.state = {
        "bit_generator": "MT19937",
        "state": {"key": np.asarray(seeded["key"], dtype=np.uint32), "pos": int(seeded["pos"])},
    }
    return generator


def _draw_numba(
    table: CumulativeTable, generator: np.random.MT19937, out: npt.NDArray[np.int64]
) -> None:
    assert _compiled_draw is not None
    state = generator.state["state"]
    key = np.array(state["key"], dtype=np.uint32)
    pos = _compiled_draw(key, int(state["pos"]), table.cum, table.guide, 53 - table.guide_bits, out)
    generator.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": pos}}


def _draw_numpy(
    table: CumulativeTable, generator: np.random.MT19937, out: npt.NDArray[np.int64]
) -> None:
    cum, guide = table.cum, table.guide
    shift = np.uint64(53 - table.guide_bits)
    for first in range(0, out.shape[0], _NUMPY_CHUNK):
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
) -> npt.NDArray[np.int64]:
    """The next ``count`` draws from ``generator``'s current state, advancing it.

    The building block of :func:`draw_exact_with_replacement`; tests use it to replay
    crafted generator states (such as ``u == 0``) through torch and through us.
    """
    out = np.empty(count, dtype=np.int64)
    if count == 0:
        return out
    if _resolve_backend(backend) == "numba":
        _draw_numba(table, generator, out)
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
) -> npt.NDArray[np.int64]:
    """Draws ``[start, stop)`` of torch's with-replacement multinomial stream, as int64.

    Equal, element for element, to::

        torch.multinomial(weights_f64, N, True,
                          generator=torch.Generator().manual_seed(seed)).numpy()[start:stop]

    for any ``N >= stop`` with ``N > 1`` (``N == 1`` takes another path in torch), where
    ``table = CumulativeTable.from_weights(weights_f64)``. Skipping ``start`` draws
    costs ``2 * start`` generator outputs and no searching; memory beyond the result is
    bounded. Like torch, only the low 32 bits of ``seed`` matter, so ``seed + epoch``
    may exceed ``2**32``; seeds torch would reject (outside ``[-2**63, 2**64)``) are
    rejected. ``backend`` overrides :data:`BACKEND` for this call.
    """
    seed, start, stop = operator.index(seed), operator.index(start), operator.index(stop)
    if not _SEED_MIN <= seed < _SEED_LIMIT:
        raise ValueError(f"seed should be in [-2**63, 2**64) as for torch, but got seed={seed}")
    if not 0 <= start <= stop:
        raise ValueError(
            f"start and stop should satisfy 0 <= start <= stop, but got start={start}, stop={stop}"
        )
    resolved = _resolve_backend(backend)
    generator = _generator_for_seed(seed)
    if start and stop > start:
        generator.random_raw(2 * start, output=False)
    return _draw_from_generator(table, generator, stop - start, backend=resolved)


def warm_up() -> None:
    """Load (or compile, the first time on a machine) the kernels with a tiny draw.

    The first draw in a process pays 0.2-0.4 s to load cached numba kernels (about 1.6 s
    to compile them where no cache exists yet); the service does this at start-up so no
    request pays it.
    """
    table = CumulativeTable.from_weights(np.array([1.0, 2.0], dtype=np.float64))
    draw_exact_with_replacement(table, 0, 0, 4)
