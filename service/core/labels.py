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
from typing import Literal

import numpy as np
import numpy.typing as npt

from service.errors import InvalidLabels

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
        """How many samples each class has, in class order."""
        return np.bincount(self.codes, minlength=self.num_classes).astype(np.int64)

    def digest(self) -> str:
        """SHA-256 of the canonical content: the same labels always give the same id."""
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
    lo, hi = int(arr.min()), int(arr.max())
    if lo >= 0 and hi <= max(4 * arr.size, 1 << 16):
        # Dense non-negative labels (the usual 0..K-1 targets): a counting pass is
        # several times faster than the sort inside np.unique.
        present = np.flatnonzero(np.bincount(arr, minlength=hi + 1))
        lookup = np.zeros(hi + 1, dtype=np.int64)
        lookup[present] = np.arange(present.size)
        dtype = _code_dtype(present.size)
        return Labels(
            kind="int", classes=tuple(present.tolist()), codes=lookup.astype(dtype)[arr]
        )
    classes, codes = np.unique(arr, return_inverse=True)
    return Labels(
        kind="int",
        classes=tuple(int(c) for c in classes),
        codes=codes.reshape(-1).astype(_code_dtype(len(classes))),
    )


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
