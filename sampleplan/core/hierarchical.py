"""Algorithm ``hierarchical``: weighted draws with replacement, any slice in O(slice).

Draw ``i`` of an epoch depends only on ``(table, seed, epoch, i)``, so a page
``[offset, offset + limit)`` costs O(limit) whatever the offset, and the epoch is never
materialised. A :class:`HierarchicalTable` is built once per (class codes, weights) and
reused for every page; :func:`draw_hierarchical` cuts pages from it.

NOTE [hierarchical-v1]
    This is the definition of the stream. Any change to what it produces is a new
    ``ALGORITHM_VERSION``, never an edit of ``hierarchical-v1``. It needs only IEEE 754
    binary64 arithmetic (round to nearest, ties to even; no fused multiply-add, no
    extended precision) and unsigned 64-bit integers, so it can be reimplemented in any
    language. ``fl(...)`` is one rounded binary64 operation; ``>>`` and ``*`` on
    integers are exact.

    Inputs: class codes ``c[0..P)`` (integers >= 0), weights ``w[0..P)`` (binary64,
    finite, >= 0, total > 0), ``seed`` and ``epoch`` in ``[0, 2**64)``.

    1. Categories. ``K = max(c) + 1``; ``n[k]`` is the number of positions in class
       ``k``. The weights are *class-determined* when ``w[i] == w[j]`` (binary64
       equality) whenever ``c[i] == c[j]``. If so, the mode is ``class``: the categories
       are the classes ``0..K)`` with masses ``m[k] = fl(n[k] * v[k])``, ``v[k]`` the
       weight of class ``k``'s members (0 for an empty class). Otherwise the mode is
       ``sample`` (an alias table over samples where weights are not set per class): the
       categories are the positions ``0..P)`` with masses ``m[i] = w[i]``. ``N`` is the
       number of categories.

    2. Alias table ``(prob[0..N), alias[0..N))``: the "sweep" construction
       (Huebschle-Schneider and Sanders, "Parallel Weighted Random Sampling", 2019) --
       lights and heavies each walked once in index order; the current heavy tops up
       each light's bucket, and once its own remaining weight is 1 or less the next
       heavy tops up its bucket -- written with prefix sums, which pins its rounding
       and lets it run as whole-array operations (a Vose loop is minutes at 10**8):

       a. ``T`` is the sum of the masses added one at a time in index order from
          ``+0.0``; ``mean = fl(T / N)``; ``p[k] = fl(m[k] / mean)``.
          (``T`` must be finite and ``mean`` a normal number.)
       b. Heavies ``h[1] < ... < h[a]`` are the categories with ``p >= 1``; if there are
          none (rounding can do that when all masses are equal), the heavy is the first
          category of maximal ``p``. Lights ``l[1] < ... < l[b]`` are the others.
       c. Excess prefix sums ``E[0] = 0``, ``E[j] = fl(E[j-1] + fl(p[h[j]] - 1))``;
          deficit prefix sums ``D[0] = 0``, ``D[k] = fl(D[k-1] + fl(1 - p[l[k]]))``.
       d. Light ``l[k]``: ``prob = p[l[k]]``; ``alias = h[j]`` with
          ``j = min(a, 1 + #{j' in 1..a : E[j'] <= D[k-1]})`` (the heavy whose excess
          interval holds the start of the light's deficit).
       e. Heavy ``h[j]``, ``j < a``: ``alias = h[j+1]``; let ``D[k*]`` be the first of
          ``D[0..b]`` with ``D[k*] >= E[j]``; ``prob = 1`` if there is none, else
          ``min(1, max(0, fl(1 - fl(D[k*] - E[j]))))``. The last heavy ``h[a]`` has
          ``prob = 1`` and ``alias = h[a]``.

       In exact arithmetic category ``k`` gets total mass ``p[k]`` over the ``N``
       unit-mass buckets, so ``P(k) = m[k] / T``; in binary64 the error is a few
       rounding units of the prefix sums. A zero-mass category has ``prob = 0`` and is
       no heavy, so it is never drawn.

    3. Bits. Draw ``i`` (``0 <= i < 2**64``) uses one block of Philox4x64-10 (Salmon et
       al., SC'11, as in Random123's ``philox4x64_R(10, ctr, key)``; numpy's ``Philox``
       is that generator)::

           (r0, r1, r2, r3) = Philox4x64_10(ctr = (i, 0, 0, 0), key = (seed, epoch))

       Known answer: ctr = key = all zeros gives ``r0 = 0x16554d9eca36314c``. ``r3`` is
       unused.

    4. Draw ``i``:

       - column ``k = (r0 * N) >> 64`` (the high word of the 128-bit product);
       - coin ``u = (r1 >> 11) * 2**-53`` (exact, in ``[0, 1)``);
       - category ``g = k`` if ``u < prob[k]`` else ``alias[k]``;
       - mode ``sample``: the position is ``g``;
       - mode ``class``: member ``t = (r2 * n[g]) >> 64``; the position is the ``t``-th
         (from 0) smallest position of class ``g``.

       Multiply-high keeps the choice exact in integers: no float rounding, and the
       non-uniformity is below ``N / 2**64`` (resp. ``n[g] / 2**64``).

    The stream of an epoch is draws ``0, 1, 2, ...``; a page ``[start, stop)`` is draws
    ``start .. stop - 1``.

    Label-set populations (multi-label data) are given as codes ``c`` too, by
    :func:`sampleplan.core.labelsets.hierarchical_codes`: each sample's one label when every
    sample has exactly one (so the stream is the single-label data's), else ``c[i] = i``
    (every category one sample: class mode with ``n[g] = 1`` and ``t = 0``, the same
    stream as an alias table over samples with masses ``w``).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from sampleplan.core.codes import count_values, group_by_class, is_sorted, value_per_class
from sampleplan.core.deadlines import check_deadline

__all__ = ["ALGORITHM_VERSION", "HierarchicalTable", "draw_hierarchical"]

ALGORITHM_VERSION = "hierarchical-v1"

Mode = Literal["class", "sample"]
Float64Array = npt.NDArray[np.float64]
Int64Array = npt.NDArray[np.int64]
UInt64Array = npt.NDArray[np.uint64]
IndexArray = npt.NDArray[np.signedinteger[Any]]
CodeArray = npt.NDArray[np.integer[Any]]

_U64_LIMIT = 2**64
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_SHIFT11 = np.uint64(11)
_TWO_POW_MINUS_53 = 2.0**-53
# Draws are made this many at a time (1 MiB of Philox output), so that a chunk's
# temporaries stay in cache and a long slice never holds more than one chunk of them.
_DRAW_CHUNK = 1 << 15
# Build passes over the population go this many elements at a time, to bound temporaries.
_BUILD_CHUNK = 1 << 20


@dataclass(frozen=True, eq=False)
class HierarchicalTable:
    """What a ``hierarchical-v1`` stream needs of a population, built once and reused.

    See NOTE [hierarchical-v1] for the definition. The arrays are read-only, so one table
    can serve concurrent requests.

    Attributes:
        mode: ``"class"`` (class first, then a uniform member) or ``"sample"`` (an alias
            table over samples, for weights that are not set per class).
        population_size: ``P``, the number of positions drawn from.
        prob: the alias table's acceptance thresholds, one per category.
        alias: the alias table's alternatives, one per category.
        offsets: mode ``class`` only: class ``k``'s members are
            ``members[offsets[k]:offsets[k + 1]]``.
        members: mode ``class`` only: positions sorted by class, then by position;
            ``None`` when that order is the identity (codes already sorted).
    """

    mode: Mode
    population_size: int
    prob: Float64Array
    alias: IndexArray
    offsets: IndexArray | None = None
    members: IndexArray | None = None

    @classmethod
    def build(cls, codes: npt.ArrayLike, weights: npt.ArrayLike) -> HierarchicalTable:
        """Prepare the table for class ``codes`` and per-position ``weights``.

        Args:
            codes: the class index ``0..K-1`` of each position of the population.
            weights: a finite float64 weight ``>= 0`` per position, not all zero.

        Raises:
            ValueError: if the arrays do not have that shape, or the weights are not
                usable (the caller is expected to have validated them already).
        """
        codes_arr, weights_arr = _validated_inputs(codes, weights)
        size = int(codes_arr.shape[0])
        num_classes = int(codes_arr.max()) + 1
        position_dtype = _index_dtype(size)

        class_weight = _class_weight_if_determined(codes_arr, weights_arr, num_classes)
        if class_weight is None:
            prob, alias = _alias_table(weights_arr)
            return cls._frozen("sample", size, prob, alias)

        counts = np.zeros(num_classes, dtype=np.int64)
        count_values(codes_arr, counts)
        with np.errstate(over="ignore"):  # an infinite mass is refused by _alias_table
            masses = counts.astype(np.float64) * class_weight
        prob, alias = _alias_table(masses)
        offsets = np.zeros(num_classes + 1, dtype=position_dtype)
        np.cumsum(counts, out=offsets[1:])
        members = _members_by_class(codes_arr, position_dtype, offsets)
        return cls._frozen("class", size, prob, alias, offsets, members)

    @classmethod
    def _frozen(
        cls,
        mode: Mode,
        size: int,
        prob: Float64Array,
        alias: IndexArray,
        offsets: IndexArray | None = None,
        members: IndexArray | None = None,
    ) -> HierarchicalTable:
        for array in (prob, alias, offsets, members):
            if array is not None:
                array.setflags(write=False)
        return cls(mode, size, prob, alias, offsets, members)

    @property
    def num_categories(self) -> int:
        """``N``: classes in mode ``class``, positions in mode ``sample``."""
        return int(self.prob.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held by the table's arrays, for cache accounting."""
        arrays = (self.prob, self.alias, self.offsets, self.members)
        return sum(int(array.nbytes) for array in arrays if array is not None)

    def _positions(self, words: UInt64Array) -> Int64Array:
        """Positions of the draws whose Philox blocks are the rows of ``words``."""
        # np.take rather than fancy indexing: faster for random gathers from big tables.
        column = _mulhi(words[:, 0], self.num_categories).view(np.int64)
        coin = (words[:, 1] >> _SHIFT11).astype(np.float64) * _TWO_POW_MINUS_53
        accept = coin < np.take(self.prob, column)
        category = np.where(accept, column, np.take(self.alias, column))
        if self.offsets is None:
            return category
        first = np.take(self.offsets, category).astype(np.int64)
        count = np.take(self.offsets, category + 1).astype(np.int64) - first
        index = first + _mulhi(words[:, 2], count.view(np.uint64)).view(np.int64)
        if self.members is None:
            return index
        return np.take(self.members, index).astype(np.int64)


def draw_hierarchical(
    table: HierarchicalTable, seed: int, epoch: int, start: int, stop: int
) -> Int64Array:
    """Positions ``[start, stop)`` of the epoch stream, int64. O(stop-start) time and memory.

    See NOTE [hierarchical-v1]: draw ``i`` depends only on ``(table, seed, epoch, i)``, so
    ``draw(a, c) == concat(draw(a, b), draw(b, c))`` for any ``a <= b <= c``.

    Raises:
        ValueError: unless ``seed`` and ``epoch`` are in ``[0, 2**64)`` and
            ``0 <= start <= stop <= 2**64``.
    """
    seed, epoch = operator.index(seed), operator.index(epoch)
    start, stop = operator.index(start), operator.index(stop)
    if not 0 <= seed < _U64_LIMIT:
        raise ValueError(f"seed should be in [0, 2**64), but got seed={seed}")
    if not 0 <= epoch < _U64_LIMIT:
        raise ValueError(f"epoch should be in [0, 2**64), but got epoch={epoch}")
    if not 0 <= start <= stop <= _U64_LIMIT:
        raise ValueError(f"need 0 <= start <= stop <= 2**64, but got start={start}, stop={stop}")
    out = np.empty(stop - start, dtype=np.int64)
    if stop == start:
        return out
    blocks = _philox_blocks(seed, epoch, start)
    for begin in range(0, stop - start, _DRAW_CHUNK):
        check_deadline()  # NOTE [Deadlines]
        end = min(begin + _DRAW_CHUNK, stop - start)
        out[begin:end] = table._positions(blocks.random_raw(4 * (end - begin)).reshape(-1, 4))
    return out


def _philox_blocks(seed: int, epoch: int, first_block: int) -> np.random.Philox:
    """A Philox4x64-10 whose next outputs are the blocks ``first_block, first_block+1, ...``.

    numpy's ``Philox`` increments its 256-bit counter *before* computing a block, and
    hands out the block's four words in order (its counter is words little-endian, as
    Random123's ``ctr.v[0..3]``). So starting the counter one below ``first_block``
    (modulo 2**256, for block 0) makes its ``random_raw`` output exactly the blocks of
    NOTE [hierarchical-v1] step 3; the known-answer test in tests/core pins this.
    """
    key = np.array([seed, epoch], dtype=np.uint64)
    return np.random.Philox(counter=(first_block - 1) % 2**256, key=key)


def _mulhi(x: UInt64Array, n: int | UInt64Array) -> UInt64Array:
    """``(x * n) >> 64`` exactly, for ``x`` and ``n`` below 2**64.

    numpy has no 128-bit integers, so the product is assembled from 32-bit halves; each
    partial sum below provably fits in 64 bits.
    """
    n_arr = np.asarray(n, dtype=np.uint64)
    x_hi = x >> _SHIFT32
    x_lo = x & _LOW32
    if n_arr.size == 0 or int(n_arr.max()) <= 0xFFFFFFFF:
        # n < 2**32: x*n = x_hi*n*2**32 + x_lo*n, and x_hi*n + (x_lo*n >> 32) < 2**64.
        return (x_hi * n_arr + ((x_lo * n_arr) >> _SHIFT32)) >> _SHIFT32
    n_hi = n_arr >> _SHIFT32
    n_lo = n_arr & _LOW32
    middle = x_hi * n_lo + ((x_lo * n_lo) >> _SHIFT32)
    middle_2 = x_lo * n_hi + (middle & _LOW32)
    high: UInt64Array = x_hi * n_hi + (middle >> _SHIFT32) + (middle_2 >> _SHIFT32)
    return high


def _validated_inputs(
    codes: npt.ArrayLike, weights: npt.ArrayLike
) -> tuple[CodeArray, Float64Array]:
    codes_arr = np.asarray(codes)
    weights_arr = np.asarray(weights)
    if codes_arr.ndim != 1 or weights_arr.ndim != 1:
        raise ValueError("codes and weights should be 1-D arrays")
    if codes_arr.shape != weights_arr.shape:
        raise ValueError(
            f"codes and weights should have the same length, but got {codes_arr.shape[0]} "
            f"and {weights_arr.shape[0]}"
        )
    if codes_arr.shape[0] == 0:
        raise ValueError("the population should not be empty")
    if not np.issubdtype(codes_arr.dtype, np.integer):
        raise ValueError(f"codes should be integers, but got dtype {codes_arr.dtype}")
    if weights_arr.dtype != np.float64:
        # Other float widths would round differently: the stream is defined on binary64.
        raise ValueError(f"weights should be float64, but got dtype {weights_arr.dtype}")
    if int(codes_arr.min()) < 0:
        raise ValueError("codes should be non-negative class indices")
    if codes_arr.dtype == np.uint64:
        # bincount refuses uint64 (no safe cast to intp); codes fit in int64 in practice.
        codes_arr = codes_arr.astype(np.int64)
    # min >= 0 and a finite max rule out NaN, infinities and negatives, with no temporaries.
    if not (float(weights_arr.min()) >= 0.0 and np.isfinite(weights_arr.max())):
        raise ValueError("weights should be finite and non-negative")
    return codes_arr, weights_arr


def _index_dtype(size: int) -> type[np.int32] | type[np.int64]:
    """The narrowest signed dtype for indices into ``size`` elements (halves table memory)."""
    return np.int32 if size < 2**31 else np.int64


def _class_weight_if_determined(
    codes: CodeArray, weights: Float64Array, num_classes: int
) -> Float64Array | None:
    """``v[k]`` of NOTE [hierarchical-v1] step 1, or ``None`` if weights vary in a class."""
    return value_per_class(codes, weights, num_classes)


def _members_by_class(
    codes: CodeArray, dtype: type[np.int32] | type[np.int64], offsets: IndexArray | None = None
) -> IndexArray | None:
    """Positions sorted by class, then by position; ``None`` if that is the identity.

    ``offsets`` are the class offsets of the table (computed here when not given).
    """
    if is_sorted(codes):
        return None
    if offsets is None:
        counts = np.zeros(int(codes.max()) + 1, dtype=np.int64)
        count_values(codes, counts)
        offsets = np.zeros(counts.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
    grouped: IndexArray = group_by_class(codes, offsets, dtype)  # type: ignore[assignment]
    return grouped


def _sequential_sum(values: Float64Array) -> float:
    """The sum of ``values`` added one at a time in index order, starting from ``+0.0``.

    ``np.sum`` is pairwise, with a blocking that numpy does not promise; ``cumsum`` is a
    plain running sum, which anyone can reproduce. Chunks chain exactly: folding the
    running total into a chunk's first element is the next step of the running sum.
    """
    total = 0.0
    with np.errstate(over="ignore"):  # an overflow gives inf, which the caller refuses
        for begin in range(0, values.shape[0], _BUILD_CHUNK):
            chunk = values[begin : begin + _BUILD_CHUNK].copy()
            chunk[0] += total
            total = float(np.cumsum(chunk)[-1])
    return total


def _alias_table(masses: Float64Array) -> tuple[Float64Array, IndexArray]:
    """``(prob, alias)`` for ``masses``: NOTE [hierarchical-v1] step 2, vectorised.

    Why the prefix-sum form: a sequential construction is a Python loop per category
    (minutes at 10**8), while this is a handful of numpy passes. Step 2d needs, for each light,
    how many ``E[j]`` lie at or below its ``D[k-1]``; one search of the heavies' ``E``
    into ``D`` gives both that (by counting) and the ``k*`` of step 2e.
    """
    size = int(masses.shape[0])
    total = _sequential_sum(masses)
    if not (np.isfinite(total) and total > 0.0):
        raise ValueError(f"the total weight should be finite and positive, but got {total}")
    mean = total / size
    if mean < np.finfo(np.float64).tiny:
        raise ValueError("the weights are too small: their mean is subnormal")
    prob = masses / mean  # p; lights keep theirs as prob, heavies are overwritten below

    # Written with out= and in-place steps: at 10**8 categories every temporary is 0.8 GB.
    heavy = prob >= 1.0
    if not heavy.any():
        heavy[int(np.argmax(prob))] = True  # argmax: the first of the maximal ones
    heavies = np.flatnonzero(heavy)
    lights = np.flatnonzero(np.logical_not(heavy, out=heavy))
    del heavy
    num_heavy, num_light = int(heavies.shape[0]), int(lights.shape[0])

    bound = np.take(prob, heavies)  # E[1..a]
    bound -= 1.0
    np.cumsum(bound, out=bound)
    deficit = np.empty(num_light + 1, dtype=np.float64)  # D[0..b]
    deficit[0] = 0.0
    np.take(prob, lights, out=deficit[1:])
    np.subtract(1.0, deficit[1:], out=deficit[1:])
    np.cumsum(deficit[1:], out=deficit[1:])

    # first[j] = k*: the first D[k] >= E[j]; D[k-1] < E[j] exactly for lights k > first[j].
    first = np.searchsorted(deficit, bound, side="left")
    alias = np.empty(size, dtype=_index_dtype(size))
    if num_light:
        # #{j : E[j] <= D[k-1]} = #{j : first[j] <= k - 1}, for the k-th light (1-based).
        passed = np.bincount(first, minlength=num_light)[:num_light]
        np.cumsum(passed, out=passed)
        np.minimum(passed, num_heavy - 1, out=passed)
        alias[lights] = np.take(heavies, passed)
        del passed
    del lights

    # mode="clip" reads D[min(k*, b)]; where there is no k* the result is replaced by 1.
    heavy_prob = np.take(deficit, first[:-1], mode="clip")
    heavy_prob -= bound[:-1]
    np.subtract(1.0, heavy_prob, out=heavy_prob)
    np.clip(heavy_prob, 0.0, 1.0, out=heavy_prob)
    heavy_prob[first[:-1] > num_light] = 1.0
    prob[heavies[:-1]] = heavy_prob
    alias[heavies[:-1]] = heavies[1:]
    prob[heavies[-1]] = 1.0
    alias[heavies[-1]] = heavies[-1]
    return prob, alias
