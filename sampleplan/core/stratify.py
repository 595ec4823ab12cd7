"""Stratified splits: parts whose class (label) shares follow the dataset's.

``split = {"fractions": [...], "seed": s, "stratify": true}`` selects the training part
by :func:`stratified_parts` instead of ``random_split``; without ``stratify`` splits stay
exactly ``random_split`` (:mod:`sampleplan.core.splitting`).

NOTE [stratified-v1]
    The definition of a stratified split; a change to what it selects is a new
    ``STRATIFY_VERSION``. Inputs: the labels (single labels or label sets) of ``n``
    samples, the split's part lengths ``L[0..m)`` (from fractions or lengths exactly as
    ``random_split`` computes them, :meth:`Split.part_lengths`) and its seed.

    0. Order. ``perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))``
       (the permutation ``random_split`` draws); ``rank[perm[k]] = k``. "In seed order"
       means by increasing ``rank``.
    1. Refusal. Every class (label) that occurs must have at least as many samples as
       there are parts of positive length, else the split is refused (as scikit-learn's
       stratified splitters refuse a class with too few members).
    2. Single labels (per class). Class ``c`` has ``n_c`` samples; its target in part
       ``j`` is ``x[c, j] = n_c * L[j] / n``. Part ``j`` gets ``floor(x[c, j]) + e[c, j]``
       samples of class ``c``, where the 0/1 matrix ``e`` has row sums
       ``n_c - sum_j floor(x[c, j])`` and column sums ``L[j] - sum_c floor(x[c, j])``,
       built class by class (in class order) by giving each class its extra samples in
       the parts with the most extra places left (ties: the part whose ``x[c, j]`` has
       the larger fractional part, then the lower part index). Such an ``e`` always
       exists (the fractional parts of ``x`` are a fractional solution and the
       transportation polytope is integral) and this greedy order (Gale-Ryser) finds
       one. So every part has exactly ``L[j]`` samples, and class ``c``'s count in it is
       within one sample of ``x[c, j]``. Then the class's samples, in seed order, are
       dealt in consecutive runs: the first to part 0, the next to part 1, ...
    3. Label sets: iterative stratification (Sechidis, Tsoumakas and Vlahavas, "On the
       Stratification of Multi-Label Data", ECML PKDD 2011, Algorithm 1), with its
       random choices made deterministic. Desired counts: ``d[j] = L[j]`` samples and
       ``d[l, j] = n_l * L[j] / n`` samples carrying label ``l`` (real numbers).
       Repeatedly take the label with the fewest samples not yet assigned (ties: the
       lower class index); assign each of its unassigned samples, in seed order, to
       the part with the largest ``d[l, j]`` among the parts not yet full (``d[j] > 0``;
       the paper has no such cap, it keeps every part at exactly ``L[j]``), ties to
       the larger ``d[j]``, then to the lower part index; after each assignment to part
       ``j``, ``d[j] -= 1`` and ``d[l', j] -= 1`` for every label ``l'`` of the sample.
       Samples with no label go last, in seed order, each to the part with the largest
       ``d[j]`` (ties: lower index).
    4. Each part lists its dataset indices in increasing order; the training part is
       part 0.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from sampleplan.core.errors import InvalidSplit
from sampleplan.core.labels import Labels
from sampleplan.core.labelsets import LabelSets
from sampleplan.core.splitting import Split

__all__ = ["STRATIFY_VERSION", "population_indices", "stratified_parts"]

STRATIFY_VERSION = "stratified-v1"

Int64Array = npt.NDArray[np.int64]


def population_indices(split: Split, labels: Labels | LabelSets) -> Int64Array:
    """Dataset indices of the training part: ``random_split``'s, or stratified if asked."""
    if not split.stratify:
        return split.training_indices(labels.size)
    return stratified_parts(split, labels)[0]


def _seed_rank(n: int, seed: int) -> Int64Array:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    rank = np.empty(n, dtype=np.int64)
    rank[perm] = np.arange(n, dtype=np.int64)
    return rank


def _check_class_sizes(labels: Labels | LabelSets, counts: Int64Array, parts: int) -> None:
    small = np.flatnonzero((counts > 0) & (counts < parts))
    if small.size:
        c = int(small[np.argmin(counts[small])])
        what = "label" if isinstance(labels, LabelSets) else "class"
        raise InvalidSplit(
            f"cannot stratify: {what} {labels.classes[c]!r} has {int(counts[c])} sample(s), "
            f"fewer than the {parts} non-empty parts of the split; merge rare classes or "
            f"split without 'stratify'"
        )


def stratified_parts(split: Split, labels: Labels | LabelSets) -> list[Int64Array]:
    """Every part's dataset indices, as NOTE [stratified-v1] defines them."""
    n = labels.size
    lengths = np.asarray(split.part_lengths(n), dtype=np.int64)
    counts = labels.class_counts()
    _check_class_sizes(labels, counts, int(np.count_nonzero(lengths)))
    rank = _seed_rank(n, split.seed)
    if isinstance(labels, LabelSets):
        part_of = _iterative(labels, lengths, rank)
    else:
        part_of = _per_class(labels, counts, lengths, rank)
    return [np.flatnonzero(part_of == j).astype(np.int64) for j in range(lengths.shape[0])]


def _per_class(
    labels: Labels, counts: Int64Array, lengths: Int64Array, rank: Int64Array
) -> npt.NDArray[np.intp]:
    n = labels.size
    k, m = counts.shape[0], lengths.shape[0]
    # x[c, j] = n_c * L[j] / n, kept as exact integer numerators over n.
    numer = counts[:, None].astype(object) * lengths[None, :].astype(object)
    base = np.array(numer // n, dtype=np.int64).reshape(k, m)
    frac = np.array(numer % n, dtype=np.int64).reshape(k, m)  # fractional part, times n
    row_extra = counts - base.sum(axis=1)
    col_extra = lengths - base.sum(axis=0)
    take = base.copy()
    part_index = np.arange(m)
    for c in range(k):
        extra = int(row_extra[c])
        if extra == 0:
            continue
        # Most places left first, then larger fractional part, then lower index.
        order = np.lexsort((part_index, -frac[c], -col_extra))
        chosen = order[:extra]
        if (col_extra[chosen] <= 0).any():  # pragma: no cover - impossible by Gale-Ryser
            raise AssertionError("stratified-v1: no controlled rounding found")
        take[c, chosen] += 1
        col_extra[chosen] -= 1
    part_of = np.empty(n, dtype=np.intp)
    # Members of each class in seed order: sort by (class, rank).
    order = np.lexsort((rank, labels.codes))
    starts = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    for c in range(k):
        members = order[starts[c] : starts[c + 1]]
        part_of[members] = np.repeat(part_index, take[c])
    return part_of


def _iterative(labels: LabelSets, lengths: Int64Array, rank: Int64Array) -> npt.NDArray[np.intp]:
    n, k, m = labels.size, labels.num_classes, lengths.shape[0]
    counts = labels.class_counts()
    wanted = lengths.astype(np.float64).copy()
    wanted_label = counts[:, None].astype(np.float64) * lengths[None, :] / n
    # Samples carrying each label, in seed order: CSC of the CSR, sorted by (label, rank).
    sample_of = labels.sample_of_occurrence()
    codes = labels.codes.astype(np.int64)
    by_label = np.lexsort((rank[sample_of], codes))
    label_starts = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(counts, out=label_starts[1:])
    carriers = sample_of[by_label]
    offsets = labels.offsets
    remaining = counts.copy()
    done = np.zeros(k, dtype=bool)
    part_of = np.full(n, -1, dtype=np.intp)
    big = np.iinfo(np.int64).max
    for _ in range(k):
        open_counts = np.where(done | (remaining == 0), big, remaining)
        label = int(np.argmin(open_counts))
        if open_counts[label] == big:
            break
        done[label] = True
        for sample in carriers[label_starts[label] : label_starts[label + 1]].tolist():
            if part_of[sample] >= 0:
                continue
            row = wanted_label[label]
            # Full parts take no more; among the rest: largest d[l, j], then d[j], then index.
            best = -1
            for j in range(m):
                if wanted[j] <= 0:
                    continue
                if (
                    best < 0
                    or row[j] > row[best]
                    or (row[j] == row[best] and wanted[j] > wanted[best])
                ):
                    best = j
            part_of[sample] = best
            wanted[best] -= 1
            mine = codes[offsets[sample] : offsets[sample + 1]]
            wanted_label[mine, best] -= 1
            remaining[mine] -= 1
    rest = np.flatnonzero(part_of < 0)
    for sample in rest[np.argsort(rank[rest], kind="stable")].tolist():
        best = int(np.argmax(wanted))  # first of the largest: ties to the lower index
        part_of[sample] = best
        wanted[best] -= 1
    return part_of
