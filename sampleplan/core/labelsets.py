"""Label sets: datasets whose samples carry any number of labels (multi-label data).

A label-set dataset is stored as CSR, once: sorted distinct ``classes`` (as in
:mod:`sampleplan.core.labels`), ``offsets`` (``size + 1`` non-decreasing int64, from 0) and
``codes`` (one class index per label occurrence); sample ``i``'s labels are
``codes[offsets[i]:offsets[i + 1]]``. A sample may have no label at all.

NOTE [Canonical label sets]
    A sample's labels are a *set*: within a sample, codes are sorted and a label given
    twice counts once (``[1, 1, 3]`` is ``{1, 3}``). Deduplicating, rather than
    refusing, is what detection data needs: a per-image list of per-box category ids
    repeats categories, and LVIS's repeat factor (detectron2's
    ``RepeatFactorTrainingSampler``) takes the set of them too. So ``[[3, 1, 1]]`` and
    ``[[1, 3]]`` are the same dataset with the same id. Labels are all integers or all
    strings across the whole dataset, as for single-label data.

    The id is the SHA-256 of a domain string naming label sets, the kind, the classes,
    the offsets and the codes. It never equals a single-label dataset's id: label sets of
    one (``[[0], [2], [0]]``) are a label-set dataset, which gives exactly the weights and
    streams of the single-label dataset ``[0, 2, 0]`` (see :func:`hierarchical_codes` and
    ``weighting.label_set_weights``), while single-label uploads keep the ids they had.

:func:`label_sets_from_csr` is the one entry point for columnar sources (Arrow/Parquet
list columns, ``.npz``-like offsets + values): every other constructor goes through it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from sampleplan.core.errors import InvalidLabels
from sampleplan.core.labels import (
    ClassName,
    LabelKind,
    Labels,
    _code_dtype,
    labels_from_array,
    labels_from_list,
)

__all__ = [
    "LABEL_REDUCES",
    "LabelReduce",
    "LabelSets",
    "hierarchical_codes",
    "is_label_set_list",
    "label_sets_from_csr",
    "label_sets_from_list",
    "label_sets_from_parts",
    "labels_or_label_sets",
    "reduce_label_weights",
]

_HASH_DOMAIN = b"sampleplan/dataset/label-sets/v1\n"

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]

LabelReduce = Literal["sum", "max", "mean"]
LABEL_REDUCES: tuple[str, ...] = get_args(LabelReduce)


@dataclass(frozen=True, eq=False)
class LabelSets:
    """Label sets in canonical CSR form (NOTE [Canonical label sets])."""

    kind: LabelKind
    classes: tuple[ClassName, ...]
    offsets: Int64Array
    codes: npt.NDArray[np.unsignedinteger[Any]]

    @property
    def size(self) -> int:
        """Number of samples."""
        return int(self.offsets.shape[0]) - 1

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_occurrences(self) -> int:
        """Labels over all samples (the sum of the cardinalities)."""
        return int(self.codes.shape[0])

    def cardinalities(self) -> Int64Array:
        """How many labels each sample has."""
        return np.diff(self.offsets)

    def class_counts(self) -> Int64Array:
        """How many samples carry each label, in class order."""
        return np.bincount(self.codes, minlength=self.num_classes).astype(np.int64)

    def unlabelled_count(self) -> int:
        """Samples with no label."""
        return int(np.count_nonzero(self.cardinalities() == 0))

    def mean_cardinality(self) -> float:
        """Label cardinality: labels per sample on average."""
        return self.num_occurrences / self.size if self.size else 0.0

    def sample_of_occurrence(self) -> Int64Array:
        """The sample each entry of ``codes`` belongs to."""
        return np.repeat(np.arange(self.size, dtype=np.int64), self.cardinalities())

    def single_codes(self) -> npt.NDArray[np.unsignedinteger[Any]] | None:
        """The codes as single labels when every sample has exactly one label, else ``None``."""
        if self.num_occurrences != self.size or not bool((self.cardinalities() == 1).all()):
            return None
        return self.codes

    def subset(self, positions: npt.NDArray[np.integer[Any]]) -> LabelSets:
        """The label sets of ``positions``, in that order (classes unchanged)."""
        lengths = self.cardinalities()[positions]
        offsets = np.zeros(positions.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        starts = self.offsets[:-1][positions]
        # Entry j of the subset comes from starts[sample] + (j - offsets[sample]).
        gather = np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(
            offsets[:-1] - starts, lengths
        )
        return LabelSets(self.kind, self.classes, offsets, self.codes[gather])

    def digest(self) -> str:
        """SHA-256 of the canonical content: the same label sets always give the same id."""
        h = hashlib.sha256(_HASH_DOMAIN)
        h.update(self.kind.encode())
        h.update(b"\n")
        h.update(json.dumps(list(self.classes), ensure_ascii=False, separators=(",", ":")).encode())
        h.update(b"\n")
        h.update(np.ascontiguousarray(self.offsets, dtype="<i8").data)
        h.update(np.ascontiguousarray(self.codes, dtype=self.codes.dtype.newbyteorder("<")).data)
        return h.hexdigest()

    def values(self) -> list[list[ClassName]]:
        """The label sets as plain Python lists, in sample order."""
        classes = list(self.classes)
        flat = [classes[c] for c in self.codes.tolist()]
        bounds = self.offsets.tolist()
        return [flat[bounds[i] : bounds[i + 1]] for i in range(self.size)]


def hierarchical_codes(population: LabelSets) -> npt.NDArray[np.unsignedinteger[Any]]:
    """The class codes algorithm ``hierarchical`` is given for a label-set population.

    Every sample with exactly one label: those labels, so the stream is the one the same
    single-label data gives. Otherwise every position is its own category (codes
    ``0..P-1``), which makes ``hierarchical-v1``'s class mode an alias table over samples
    (each class has one member, ``t = 0``): the per-sample path, since a sample's weight
    is not set by one class.
    """
    single = population.single_codes()
    if single is not None:
        return single
    return np.arange(population.size, dtype=_code_dtype(population.size))


def label_sets_from_parts(
    kind: LabelKind,
    classes: Sequence[ClassName],
    offsets: npt.NDArray[np.integer[Any]],
    codes: npt.NDArray[np.integer[Any]],
) -> LabelSets:
    """Rebuild :class:`LabelSets` from stored parts (already canonical)."""
    return LabelSets(
        kind=kind,
        classes=tuple(classes),
        offsets=np.asarray(offsets).astype(np.int64, copy=False),
        codes=np.asarray(codes).astype(_code_dtype(len(classes)), copy=False),
    )


def _check_offsets(offsets: npt.ArrayLike, num_values: int) -> Int64Array:
    arr = np.asarray(offsets)
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise InvalidLabels(
            f"label-set offsets must be a 1-d array of n + 1 integers, got shape {arr.shape}"
        )
    if arr.dtype.kind not in "iu":
        raise InvalidLabels(f"label-set offsets must be integers, got dtype {arr.dtype}")
    out = arr.astype(np.int64)
    if arr.shape[0] == 1:
        raise InvalidLabels("labels must not be empty: the dataset has no sample")
    if int(out[0]) != 0:
        raise InvalidLabels(f"label-set offsets must start at 0, got {int(out[0])}")
    steps = np.diff(out)
    if (steps < 0).any():
        bad = int(np.flatnonzero(steps < 0)[0])
        raise InvalidLabels(
            f"label-set offsets must not decrease: offsets[{bad + 1}] < offsets[{bad}]"
        )
    if int(out[-1]) != num_values:
        raise InvalidLabels(
            f"label-set offsets end at {int(out[-1])}, but there are {num_values} label values"
        )
    return out


def label_sets_from_csr(
    offsets: npt.ArrayLike,
    values: npt.ArrayLike | Sequence[Any],
    *,
    dictionary: Sequence[Any] | npt.NDArray[Any] | None = None,
) -> LabelSets:
    """Canonical label sets from CSR parts: ``offsets`` (``n + 1``) and the flat label ``values``.

    ``values`` holds the labels themselves (integers or strings, as a numpy array or a
    sequence), sample ``i``'s being ``values[offsets[i]:offsets[i + 1]]``. This is the
    entry point for list columns (an Arrow ``ListArray``'s ``offsets`` and ``values``).
    Duplicates within a sample are dropped and each set sorted (NOTE [Canonical label
    sets]); classes are sorted as for single-label data.

    With ``dictionary`` (a dictionary-encoded column: Arrow ``DictionaryArray``'s
    ``dictionary``), ``values`` are integer indices into it and the labels are
    ``dictionary[values]``; the result is the same as for the decoded labels.
    """
    if dictionary is not None:
        indices = np.asarray(values)
        if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
            raise InvalidLabels("dictionary-encoded label values must be integer indices")
        names = np.asarray(dictionary)
        if indices.size and not 0 <= int(indices.min()) <= int(indices.max()) < names.shape[0]:
            raise InvalidLabels("a dictionary index of the label values is out of range")
        values = names[indices.astype(np.int64)] if indices.size else names[:0]
    if isinstance(values, np.ndarray):
        flat = values
        if flat.ndim != 1:
            raise InvalidLabels(f"label values must be a 1-d array, got shape {flat.shape}")
        kind: LabelKind
        if flat.dtype.kind in "iu":
            kind = "int"
            if flat.dtype.kind == "u" and flat.size and int(flat.max()) > np.iinfo(np.int64).max:
                raise InvalidLabels("integer labels must fit in 64 bits (int64)")
        elif flat.dtype.kind in "UO" and all(type(v) is str for v in flat.tolist()):
            kind = "str"
        else:
            raise InvalidLabels(
                f"labels must be integers or strings, got an array of dtype {flat.dtype}"
            )
    else:
        seq = list(values)  # type: ignore[arg-type]
        kind = "str" if seq and type(seq[0]) is str else "int"
        flat = np.asarray(seq, dtype=object)
    bounds = _check_offsets(offsets, int(flat.shape[0]))
    size = bounds.shape[0] - 1
    if flat.shape[0] == 0:
        # No labels at all: a valid dataset of unlabelled samples (kind int, no class).
        return LabelSets("int", (), bounds, np.zeros(0, dtype=np.uint8))
    if isinstance(values, np.ndarray) and kind == "int":
        canon = labels_from_array(flat.astype(np.int64))
    else:
        canon = labels_from_list(flat.tolist())
    codes = canon.codes.astype(np.int64)
    sample = np.repeat(np.arange(size, dtype=np.int64), np.diff(bounds))
    same = sample[1:] == sample[:-1]
    if (codes[1:][same] <= codes[:-1][same]).any():
        # Some set is out of order or repeats a label: one sort of (sample, code) keys
        # orders every set and puts its duplicates side by side.
        k = max(canon.num_classes, 1)
        if size * k < 2**62:
            key = np.unique(sample * k + codes)
            sample, codes = key // k, key % k
        else:  # pragma: no cover - needs more than 2**62 sample-class pairs
            order = np.lexsort((codes, sample))
            sample, codes = sample[order], codes[order]
            keep = np.ones(sample.shape[0], dtype=bool)
            keep[1:] = (sample[1:] != sample[:-1]) | (codes[1:] != codes[:-1])
            sample, codes = sample[keep], codes[keep]
    new_offsets = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(sample, minlength=size), out=new_offsets[1:])
    return LabelSets(
        kind=canon.kind,
        classes=canon.classes,
        offsets=new_offsets,
        codes=codes.astype(_code_dtype(canon.num_classes)),
    )


def is_label_set_list(values: object) -> bool:
    """Whether a JSON-like label list is label sets (its first element is a list)."""
    return (
        isinstance(values, list | tuple) and len(values) > 0 and isinstance(values[0], list | tuple)
    )


def label_sets_from_list(values: object) -> LabelSets:
    """Label sets from a JSON-like list of lists of ints (or of strings).

    Refuses a top level that is not a list, an element that is not a list (ragged
    nesting: ``[[0], 1]``), a list inside a set (nested too deep: ``[[[0]]]``), and mixed
    int and string labels; an empty set ``[]`` is an unlabelled sample.
    """
    if not isinstance(values, list | tuple):
        raise InvalidLabels(f"label sets must be a list of lists, got {type(values).__name__}")
    if len(values) == 0:
        raise InvalidLabels("labels must not be empty")
    lengths = np.empty(len(values), dtype=np.int64)
    flat: list[Any] = []
    for i, item in enumerate(values):
        if not isinstance(item, list | tuple):
            raise InvalidLabels(
                f"label sets must be a list of lists; labels[{i}] is {item!r:.40} "
                f"({type(item).__name__}), not a list (write [{item!r:.20}] for one label)"
            )
        lengths[i] = len(item)
        flat.extend(item)
    bad = next((j for j, v in enumerate(flat) if type(v) is not int and type(v) is not str), None)
    if bad is not None:
        sample = int(np.searchsorted(np.cumsum(lengths), bad, side="right"))
        value = flat[bad]
        if isinstance(value, list | tuple):
            what = "a list (label sets nest one level: a list of lists of labels)"
        elif value is None:
            what = "null"
        else:
            name = "boolean" if isinstance(value, bool) else type(value).__name__
            what = f"a {name} ({value!r:.40})"
        raise InvalidLabels(f"labels[{sample}] holds {what}; labels must be integers or strings")
    if flat:
        first = type(flat[0])
        mixed = next((j for j, v in enumerate(flat) if type(v) is not first), None)
        if mixed is not None:
            sample = int(np.searchsorted(np.cumsum(lengths), mixed, side="right"))
            raise InvalidLabels(
                f"labels must be all integers or all strings; labels[{sample}] holds a "
                f"{type(flat[mixed]).__name__} ({flat[mixed]!r:.40}) where "
                f"{'integers' if first is int else 'strings'} were expected"
            )
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if flat and type(flat[0]) is int:
        try:
            arr = np.array(flat, dtype=np.int64)
        except OverflowError as exc:
            raise InvalidLabels("integer labels must fit in 64 bits (int64)") from exc
        return label_sets_from_csr(offsets, arr)
    return label_sets_from_csr(offsets, flat)


# NOTE [Label reduce]
#     A class-based strategy gives each label c a weight t_c (computed from the number of
#     population samples carrying c). A sample with labels L gets
#
#     ======  ==============================  =========================================
#     sum     t_c summed over c in L          the default; with inverse_frequency it is
#                                             class-aware sampling's draw probability
#     max     the largest t_c, c in L         the rarest label decides (as repeat_factor)
#     mean    the sum over |L|                a sample's labels share one unit of weight
#     ======  ==============================  =========================================
#
#     For one label all three are t_c itself, bit for bit: the sum starts from +0.0 and
#     adds t_c (exact), the mean divides by 1. The sum adds a sample's labels in class
#     order (np.bincount's sequential accumulation). A sample with no label gets
#     ``unlabelled_weight``.


def reduce_label_weights(
    label_sets: LabelSets,
    table: Float64Array,
    reduce: LabelReduce,
    unlabelled_weight: float,
) -> Float64Array:
    """Per-sample weights from per-label weights ``table``; see NOTE [Label reduce]."""
    size = label_sets.size
    lengths = label_sets.cardinalities()
    per_occurrence = table[label_sets.codes]
    if reduce == "max":
        out = np.zeros(size, dtype=np.float64)
        labelled = lengths > 0
        if per_occurrence.shape[0]:
            # Empty sets add no entry, so each labelled sample's run ends where the
            # next labelled sample's starts.
            out[labelled] = np.maximum.reduceat(per_occurrence, label_sets.offsets[:-1][labelled])
    else:
        out = np.bincount(
            label_sets.sample_of_occurrence(), weights=per_occurrence, minlength=size
        ).astype(np.float64, copy=False)
        if reduce == "mean":
            np.divide(out, lengths, out=out, where=lengths > 0)
    out[lengths == 0] = unlabelled_weight
    return out


def labels_or_label_sets(values: object) -> Labels | LabelSets:
    """A JSON-like label list: label sets if its first element is a list, else single labels."""
    if is_label_set_list(values):
        return label_sets_from_list(values)
    return labels_from_list(values)
