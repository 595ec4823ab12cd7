"""Labels: canonical form, class counts and the content hash that names a dataset.

A dataset is a sequence of labels in sample order. Labels are either all integers or all
strings. Canonically a dataset is its sorted list of distinct classes plus, for every
sample, the index of its class in that list (its *code*), which is exactly how
``torchvision.datasets.ImageFolder`` indexes sorted class names and how integer targets
already look when they are ``0..K-1``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import numpy.typing as npt

from sampleplan.core.codes import count_values, gather, min_max
from sampleplan.core.errors import InvalidLabels

LabelKind = Literal["int", "str"]
ClassName = int | str

#: Versioned prefix of the dataset hash, so a change of canonical form changes every id.
_HASH_DOMAIN = b"sampleplan/dataset/v1\n"


def _code_dtype(num_classes: int) -> np.dtype[np.unsignedinteger]:
    """The narrowest unsigned dtype that holds ``num_classes`` codes (canonical, compact)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if num_classes <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


@dataclass(frozen=True, eq=False)
class Labels:
    """Labels in canonical form: sorted distinct ``classes`` and a per-sample ``codes`` array."""

    kind: LabelKind
    classes: tuple[ClassName, ...]
    codes: npt.NDArray[np.unsignedinteger]

    @property
    def size(self) -> int:
        return int(self.codes.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> npt.NDArray[np.int64]:
        """How many samples each class has, in class order (a fresh array each call)."""
        return self._class_counts.copy()

    @cached_property
    def _class_counts(self) -> npt.NDArray[np.int64]:
        # Counted once per object; the constructors below that count anyway seed it.
        counts = np.zeros(self.num_classes, dtype=np.int64)
        count_values(self.codes, counts)
        return counts

    def digest(self) -> str:
        """SHA-256 of the canonical content: the same labels always give the same id.

        Computed once per object: at 10**8 labels hashing the codes is a good part of a
        dataset's creation, and the catalog asks for the id more than once.
        """
        return self._digest

    @cached_property
    def _digest(self) -> str:
        h = hashlib.sha256(_HASH_DOMAIN)
        h.update(self.kind.encode())
        h.update(b"\n")
        h.update(json.dumps(list(self.classes), ensure_ascii=False, separators=(",", ":")).encode())
        h.update(b"\n")
        h.update(np.ascontiguousarray(self.codes, dtype=self.codes.dtype.newbyteorder("<")).data)
        return h.hexdigest()

    def values(self) -> list[ClassName]:
        """The labels as plain Python values, in sample order."""
        classes = np.asarray(self.classes, dtype=object)
        return list(classes[self.codes])


def labels_from_codes(
    kind: LabelKind, classes: Sequence[ClassName], codes: npt.NDArray[np.integer]
) -> Labels:
    """Rebuild :class:`Labels` from stored parts (already canonical)."""
    dtype = _code_dtype(len(classes))
    return Labels(
        kind=kind, classes=tuple(classes), codes=np.asarray(codes).astype(dtype, copy=False)
    )


def _with_counts(labels: Labels, counts: npt.NDArray[np.int64]) -> Labels:
    """``labels`` with its class counts filled in, when the constructor counted them anyway."""
    labels.__dict__["_class_counts"] = counts
    return labels


def labels_from_array(values: npt.NDArray[np.generic]) -> Labels:
    """Canonicalise a 1-d integer array (from JSON, ``.npy`` or raw binary)."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidLabels(f"labels must be a 1-d array, got shape {arr.shape}")
    if arr.size == 0:
        raise InvalidLabels("labels must not be empty")
    if arr.dtype.kind == "b":
        raise InvalidLabels("labels must be integers or strings, got booleans")
    if arr.dtype.kind not in "iu":
        raise InvalidLabels(
            f"labels must be integers or strings, got an array of dtype {arr.dtype}"
        )
    return labels_from_int_chunks([arr])


def _as_signed(chunk: npt.NDArray[np.integer]) -> npt.NDArray[np.integer]:
    # bincount and unique refuse (or mishandle) uint64; values past int64 are not labels.
    if chunk.dtype == np.uint64:
        if chunk.size and int(chunk.max()) > np.iinfo(np.int64).max:
            raise InvalidLabels("integer labels must fit in 64 bits (int64)")
        return chunk.astype(np.int64)
    return chunk


def labels_from_int_chunks(chunks: Sequence[npt.NDArray[np.integer]]) -> Labels:
    """Canonicalise integer labels given in pieces (an Arrow column's chunks), in order.

    The same result as :func:`labels_from_array` on their concatenation, without making
    it: at 10**8 labels the concatenation alone would be another 0.4-0.8 GB.
    """
    parts = [_as_signed(np.asarray(c).reshape(-1)) for c in chunks]
    parts = [c for c in parts if c.size]
    size = sum(int(c.size) for c in parts)
    if size == 0:
        raise InvalidLabels("labels must not be empty")
    bounds = [min_max(c) for c in parts]
    lo = min(b[0] for b in bounds)
    hi = max(b[1] for b in bounds)
    if lo >= 0 and hi <= max(4 * size, 1 << 16):
        # Dense non-negative labels (the usual 0..K-1 targets): a counting pass is
        # several times faster than the sort inside np.unique.
        counts = np.zeros(hi + 1, dtype=np.int64)
        for c in parts:
            count_values(c, counts)
        present = np.flatnonzero(counts)
        dtype = _code_dtype(present.size)
        codes = np.empty(size, dtype=dtype)
        # Labels that are already 0..K-1 are their own codes: a cast, not a gather.
        identity = present.size == hi + 1
        lookup = np.zeros(hi + 1, dtype=dtype)
        lookup[present] = np.arange(present.size, dtype=dtype)
        start = 0
        for c in parts:
            stop = start + c.size
            if identity:
                codes[start:stop] = c
            else:
                gather(lookup, c, out=codes[start:stop])
            start = stop
        labels = Labels(kind="int", classes=tuple(present.tolist()), codes=codes)
        return _with_counts(labels, counts[present])
    arr = parts[0] if len(parts) == 1 else np.concatenate(parts)
    classes, inverse = np.unique(arr, return_inverse=True)
    return Labels(
        kind="int",
        classes=tuple(int(c) for c in classes),
        codes=inverse.reshape(-1).astype(_code_dtype(len(classes))),
    )


def labels_from_dictionary(
    dictionary: Sequence[ClassName] | npt.NDArray[np.integer],
    index_chunks: Sequence[npt.NDArray[np.integer]],
) -> Labels:
    """Canonicalise labels given as a dictionary and, in pieces, indices into it.

    ``dictionary`` holds all-string or all-integer values (Arrow's dictionary arrays,
    pandas' categoricals); entries no index uses are not classes, and duplicate entries
    are one class, so the result is exactly that of the decoded labels.
    """
    parts = [np.asarray(c).reshape(-1) for c in index_chunks]
    parts = [c for c in parts if c.size]
    size = sum(int(c.size) for c in parts)
    if size == 0:
        raise InvalidLabels("labels must not be empty")
    entries = len(dictionary)
    counts = np.zeros(entries, dtype=np.int64)
    for c in parts:
        lo, hi = min_max(c)
        if lo < 0 or hi >= entries:
            raise InvalidLabels("dictionary indices must point into the dictionary")
        count_values(c, counts)
    used = np.flatnonzero(counts)
    kind: LabelKind
    classes: tuple[ClassName, ...]
    if isinstance(dictionary, np.ndarray):
        if dictionary.dtype.kind not in "iu":
            raise InvalidLabels(
                f"labels must be integers or strings, got a dictionary of dtype {dictionary.dtype}"
            )
        values = _as_signed(dictionary)[used]
        uniq, inverse = np.unique(values, return_inverse=True)
        kind, classes = "int", tuple(int(c) for c in uniq)
        class_of_used = inverse.reshape(-1)
    else:
        names = [dictionary[int(i)] for i in used]
        bad = next((n for n in names if type(n) is not str), None)
        if bad is not None:
            raise InvalidLabels(
                f"labels must be all integers or all strings; the dictionary holds {bad!r}"
            )
        sorted_names = sorted({str(n) for n in names})
        kind, classes = "str", tuple(sorted_names)
        index: dict[ClassName, int] = {name: i for i, name in enumerate(sorted_names)}
        class_of_used = np.fromiter((index[n] for n in names), dtype=np.int64, count=len(names))
    dtype = _code_dtype(len(classes))
    lookup = np.zeros(max(entries, 1), dtype=dtype)
    lookup[used] = class_of_used
    codes = np.empty(size, dtype=dtype)
    start = 0
    for c in parts:
        stop = start + c.size
        gather(lookup, c, out=codes[start:stop])  # in range: checked above
        start = stop
    return Labels(kind=kind, classes=classes, codes=codes)


def labels_from_strings(values: Sequence[str]) -> Labels:
    """Canonicalise string labels: classes sorted as Python sorts ``str`` (as ImageFolder does)."""
    if len(values) == 0:
        raise InvalidLabels("labels must not be empty")
    classes = sorted(set(values))
    index = {name: i for i, name in enumerate(classes)}
    dtype = _code_dtype(len(classes))
    codes = np.fromiter((index[v] for v in values), dtype=dtype, count=len(values))
    return Labels(kind="str", classes=tuple(classes), codes=codes)


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def labels_from_list(values: object) -> Labels:
    """Canonicalise labels given as a JSON-like list: all ints or all strings.

    Rejects what would silently change meaning: booleans, floats (even ``3.0``), ``None``,
    nested lists, mixed ints and strings, and integers outside int64.
    """
    if not isinstance(values, list | tuple):
        raise InvalidLabels(
            f"labels must be a list of integers or strings, got {type(values).__name__}"
        )
    if len(values) == 0:
        raise InvalidLabels("labels must not be empty")
    first = values[0]
    if type(first) is int:
        bad = next((i for i, v in enumerate(values) if type(v) is not int), None)
        if bad is not None:
            raise InvalidLabels(_mixed_message(values, bad, "integers"))
        try:
            arr = np.array(values, dtype=np.int64)
        except OverflowError as exc:
            raise InvalidLabels("integer labels must fit in 64 bits (int64)") from exc
        return labels_from_array(arr)
    if type(first) is str:
        bad = next((i for i, v in enumerate(values) if type(v) is not str), None)
        if bad is not None:
            raise InvalidLabels(_mixed_message(values, bad, "strings"))
        return labels_from_strings(values)
    raise InvalidLabels(_mixed_message(values, 0, "integers or strings"))


def _mixed_message(values: Sequence[object], index: int, expected: str) -> str:
    value = values[index]
    if isinstance(value, float) and not math.isfinite(value):
        what = f"a non-finite float ({value})"
    elif isinstance(value, bool):
        what = f"a boolean ({value})"
    elif value is None:
        what = "null"
    else:
        what = f"a {type(value).__name__} ({_describe(value)})"
    return (
        f"labels must be all integers or all strings; labels[{index}] is {what} "
        f"where {expected} were expected"
    )
