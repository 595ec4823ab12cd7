"""Whole passes over class codes, made once each: counting, grouping, constancy checks.

At 10**8 labels every pass over the codes counts: ``np.bincount`` first copies its input
to int64 (0.8 GB), a stable argsort of (class, position) keys sorts 10**8 integers, and
a scatter-then-compare builds two more temporaries. These functions give the same
results in one linear pass each, with numba kernels (nogil, no temporaries) when numba
is there and with numpy otherwise. Results never depend on the backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from sampleplan.core.jit import NUMBA, compile_kernel

__all__ = [
    "count_values",
    "first_positions",
    "gather",
    "group_by_class",
    "is_sorted",
    "min_max",
    "value_per_class",
]

IntArray = npt.NDArray[np.integer[Any]]


def _count_kernel(values: Any, counts: Any) -> None:
    for i in range(values.shape[0]):
        counts[values[i]] += 1


def _min_max_kernel(values: Any) -> tuple[int, int]:
    lo = values[0]
    hi = values[0]
    for i in range(1, values.shape[0]):
        v = values[i]
        if v < lo:
            lo = v
        elif v > hi:
            hi = v
    return lo, hi


def _is_sorted_kernel(values: Any) -> bool:
    for i in range(1, values.shape[0]):  # noqa: SIM110 (a loop is what numba compiles)
        if values[i] < values[i - 1]:
            return False
    return True


def _group_kernel(codes: Any, next_slot: Any, out: Any) -> None:
    for i in range(codes.shape[0]):
        k = codes[i]
        out[next_slot[k]] = i
        next_slot[k] += 1


def _value_per_class_kernel(codes: Any, values: Any, per_class: Any, seen: Any) -> bool:
    for i in range(codes.shape[0]):
        k = codes[i]
        if seen[k]:
            if per_class[k] != values[i]:
                return False
        else:
            seen[k] = True
            per_class[k] = values[i]
    return True


def _first_positions_kernel(codes: Any, first: Any) -> None:
    missing = first.shape[0]
    for i in range(codes.shape[0]):
        k = codes[i]
        if first[k] < 0:
            first[k] = i
            missing -= 1
            if missing == 0:
                return


def _gather_kernel(table: Any, index: Any, out: Any) -> None:
    for i in range(index.shape[0]):
        out[i] = table[index[i]]


_gather: Final[Callable[..., None] | None] = (
    compile_kernel(_gather_kernel) if NUMBA is not None else None
)
_first_positions: Final[Callable[..., None] | None] = (
    compile_kernel(_first_positions_kernel) if NUMBA is not None else None
)
_count: Final[Callable[..., None] | None] = (
    compile_kernel(_count_kernel) if NUMBA is not None else None
)
_min_max: Final[Callable[..., tuple[int, int]] | None] = (
    compile_kernel(_min_max_kernel) if NUMBA is not None else None
)
_is_sorted: Final[Callable[..., bool] | None] = (
    compile_kernel(_is_sorted_kernel) if NUMBA is not None else None
)
_group: Final[Callable[..., None] | None] = (
    compile_kernel(_group_kernel) if NUMBA is not None else None
)
_value_per_class: Final[Callable[..., bool] | None] = (
    compile_kernel(_value_per_class_kernel) if NUMBA is not None else None
)


def min_max(values: IntArray) -> tuple[int, int]:
    """``(min, max)`` of a non-empty integer array, in one pass."""
    if _min_max is not None:
        lo, hi = _min_max(values)
        return int(lo), int(hi)
    return int(values.min()), int(values.max())


def count_values(values: IntArray, counts: npt.NDArray[np.int64]) -> None:
    """Add to ``counts[v]`` one for every ``v`` of ``values`` (all in ``[0, len(counts))``)."""
    if _count is not None:
        _count(values, counts)
    else:
        counts += np.bincount(values, minlength=counts.shape[0])


def is_sorted(values: IntArray) -> bool:
    """Whether ``values`` never decrease (stops at the first descent)."""
    if values.shape[0] < 2:
        return True
    if _is_sorted is not None:
        return bool(_is_sorted(values))
    return bool(np.all(values[1:] >= values[:-1]))


def group_by_class(
    codes: IntArray, offsets: IntArray, dtype: type[np.int32] | type[np.int64]
) -> IntArray:
    """Positions sorted by class, then by position: a counting sort on ``offsets``.

    ``offsets[k]`` is where class ``k``'s members start (``offsets[-1]`` the total), as
    the cumulative class counts give them. Equal to a stable argsort of ``codes``.
    """
    size = int(codes.shape[0])
    if _group is not None:
        out = np.empty(size, dtype=dtype)
        _group(codes, offsets[:-1].astype(np.int64), out)
        return out
    return _group_numpy(codes, dtype)


_SHIFT32 = np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)
_CHUNK = 1 << 20


def _group_numpy(codes: IntArray, dtype: type[np.int32] | type[np.int64]) -> IntArray:
    size = int(codes.shape[0])
    if size > 2**32 or int(codes.max()) >= 2**32:
        stable: IntArray = np.argsort(codes, kind="stable").astype(dtype)
        return stable
    # Sorting unique (class << 32 | position) keys gives the stable order by class, several
    # times faster than a stable argsort; the positions are then the keys' low halves.
    keys = np.empty(size, dtype=np.uint64)
    for begin in range(0, size, _CHUNK):
        end = min(begin + _CHUNK, size)
        np.left_shift(codes[begin:end].astype(np.uint64), _SHIFT32, out=keys[begin:end])
        keys[begin:end] |= np.arange(begin, end, dtype=np.uint64)
    keys.sort()
    keys &= _LOW32
    grouped: IntArray = keys.astype(dtype) if dtype is np.int32 else keys.view(np.int64)
    return grouped


def gather(table: npt.NDArray[Any], index: IntArray, out: npt.NDArray[Any] | None = None) -> Any:
    """``table[index]`` (into ``out`` if given); every index must be in range.

    ``np.take`` first converts a narrow index (uint16 codes) to a fresh intp array: 0.8 GB
    and most of the time at 10**8 indices. The kernel reads the index as it is.
    """
    if out is None:
        out = np.empty(index.shape[0], dtype=table.dtype)
    if _gather is not None:
        _gather(table, index, out)
    else:
        np.take(table, index, out=out, mode="clip")
    return out


def first_positions(codes: IntArray, num_classes: int) -> npt.NDArray[np.int64]:
    """The first position of each class in ``codes`` (-1 for a class with none).

    The numba kernel stops as soon as every class has been seen.
    """
    first = np.full(num_classes, -1, dtype=np.int64)
    if _first_positions is not None:
        _first_positions(codes, first)
        return first
    order = np.arange(codes.shape[0] - 1, -1, -1)
    first[codes[order]] = order  # the last write wins: the smallest position
    return first


def value_per_class(
    codes: IntArray, values: npt.NDArray[np.float64], num_classes: int
) -> npt.NDArray[np.float64] | None:
    """``v`` with ``values[i] == v[codes[i]]`` for every ``i`` (binary64 equality), if any.

    ``None`` when two members of a class have different values. A class without members
    gets 0.
    """
    per_class = np.zeros(num_classes, dtype=np.float64)
    if _value_per_class is not None:
        seen = np.zeros(num_classes, dtype=np.bool_)
        return per_class if _value_per_class(codes, values, per_class, seen) else None
    # The scatter leaves *some* member's value in each slot (numpy does not say which):
    # if the values are class-determined every member has the same one, and if they are
    # not, the comparison fails whichever won.
    per_class[codes] = values
    for begin in range(0, codes.shape[0], _CHUNK):
        end = begin + _CHUNK
        if not np.array_equal(np.take(per_class, codes[begin:end]), values[begin:end]):
            return None
    return per_class
