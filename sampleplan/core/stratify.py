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

NOTE [stratified-v2]
    ``stratified-v1`` keeps its splits for the plans that have it; a plan asks for this
    definition with ``"definitions": {"stratify": "stratified-v2"}``. The measure it
    minimises is Sechidis's label distribution, ``LD = mean over labels l of the mean over
    parts j of |a[l, j] / (L[j] - a[l, j]) - n_l / (n - n_l)|`` (``a[l, j]``: samples of
    part ``j`` carrying ``l``). Steps 0, 1 and 4 are stratified-v1's.

    2'. Single labels, two parts: largest remainder, as scikit-learn's
       ``StratifiedShuffleSplit`` counts (``_approximate_mode``). Part 0 gets
       ``floor(x[c, 0])`` samples of every class plus one for the ``L[0] - sum_c
       floor(x[c, 0])`` classes with the largest fractional parts of ``x[c, 0]`` (exact,
       as integers over ``n``); among classes whose fractional parts tie at the boundary,
       those whose extra sample in part 0 lowers LD most (exactly, in rationals; a part
       left with no sample outside the class counts as infinite), then the class whose
       first sample in seed order comes first. Part 1 gets the rest of each class. So
       every class is within ``floor``/``ceil`` of its exact share in both parts, and LD
       is the least of every largest-remainder rounding: never above scikit-learn's, whose
       ties are random. More than two parts: stratified-v1's step 2. The class's samples
       are dealt as in stratified-v1.
    3'. Label sets: stratified-v1's step 3, then a deterministic descent on
       ``LD + 2 * LPD`` (LPD: LD over the pairs of labels that occur together in a
       sample, Szymanski and Kajdanowicz 2017; weighted twice, as LD alone lets the pairs
       drift), which keeps every part's length. LD here is the sum of its terms, each
       binary64 and their sum exactly rounded (``math.fsum``), divided by their number:
       every machine takes the same moves. A move exchanges two samples of different
       parts, each the first in seed order of its (label set, part). Each pass takes the
       move that lowers the measure most, by more than ``1e-12`` (ties: the first in the
       order part ``j1``, part ``j2 > j1``, the label set leaving ``j1``, the label set
       leaving ``j2``, label sets numbered in the order of their first sample in seed
       order), and the descent stops when no move does, or after 256 moves. It runs when
       it is cheap: ``U * U * m * m <= 4096`` (``U`` distinct label sets, ``m`` parts)
       and ``n <= 10000``; larger problems keep stratified-v1's assignment, which matches
       the peers there.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import torch

from sampleplan.core.errors import InvalidSplit
from sampleplan.core.labels import Labels
from sampleplan.core.labelsets import LabelSets
from sampleplan.core.splitting import Split

__all__ = [
    "STRATIFY_V2",
    "STRATIFY_VERSION",
    "STRATIFY_VERSIONS",
    "label_distribution",
    "population_indices",
    "stratified_parts",
]

#: The definition a stratified split gets unless the plan's ``definitions`` ask for another.
STRATIFY_VERSION = "stratified-v1"
#: NOTE [stratified-v2].
STRATIFY_V2 = "stratified-v2"
STRATIFY_VERSIONS: tuple[str, ...] = (STRATIFY_VERSION, STRATIFY_V2)

Int64Array = npt.NDArray[np.int64]


def population_indices(
    split: Split, labels: Labels | LabelSets, *, version: str = STRATIFY_VERSION
) -> Int64Array:
    """Dataset indices of the training part: ``random_split``'s, or stratified if asked."""
    if not split.stratify:
        return split.training_indices(labels.size)
    return stratified_parts(split, labels, version=version)[0]


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


def stratified_parts(
    split: Split, labels: Labels | LabelSets, *, version: str = STRATIFY_VERSION
) -> list[Int64Array]:
    """Every part's dataset indices, as NOTE [stratified-v1] (or ``version``) defines them."""
    if version not in STRATIFY_VERSIONS:
        raise ValueError(f"unknown stratified split definition {version!r}")
    v2 = version == STRATIFY_V2
    n = labels.size
    lengths = np.asarray(split.part_lengths(n), dtype=np.int64)
    counts = labels.class_counts()
    _check_class_sizes(labels, counts, int(np.count_nonzero(lengths)))
    rank = _seed_rank(n, split.seed)
    if isinstance(labels, LabelSets):
        part_of = _iterative(labels, lengths, rank)
        if v2:
            _descend(labels, lengths, rank, part_of)
    else:
        part_of = _per_class(labels, counts, lengths, rank, v2=v2)
    return [np.flatnonzero(part_of == j).astype(np.int64) for j in range(lengths.shape[0])]


def _per_class(
    labels: Labels, counts: Int64Array, lengths: Int64Array, rank: Int64Array, *, v2: bool
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
    # Members of each class in seed order: sort by (class, rank).
    by_class = np.lexsort((rank, labels.codes))
    starts = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    if v2 and m == 2:
        first_rank = np.full(k, np.iinfo(np.int64).max, dtype=np.int64)
        present = counts > 0
        first_rank[present] = rank[by_class[starts[:-1][present]]]
        up = _largest_remainder(counts, lengths, frac[:, 0], int(col_extra[0]), first_rank)
        take[up, 0] += 1
        take[:, 1] = counts - take[:, 0]
        row_extra[:] = 0
    for c in range(k):
        extra = int(row_extra[c])
        if extra == 0:
            continue
        # Most places left first, then larger fractional part, then lower index.
        preference = np.lexsort((part_index, -frac[c], -col_extra))
        chosen = preference[:extra]
        if (col_extra[chosen] <= 0).any():  # pragma: no cover - impossible by Gale-Ryser
            raise AssertionError("stratified-v1: no controlled rounding found")
        take[c, chosen] += 1
        col_extra[chosen] -= 1
    part_of = np.empty(n, dtype=np.intp)
    for c in range(k):
        members = by_class[starts[c] : starts[c + 1]]
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


def _ld_term(count: int, part: int, ratio: Fraction) -> Fraction | None:
    """``|count / (part - count) - ratio|``; ``None`` (infinite) for ``part == count``."""
    if part == count:
        return None
    return abs(Fraction(count, part - count) - ratio)


def _rounding_cost(n_c: int, a0: int, lengths: Int64Array, n: int) -> tuple[int, Fraction]:
    """LD terms of a class with ``a0`` samples in part 0 of two: (infinite terms, the rest)."""
    ratio = Fraction(n_c, n - n_c)
    infinite, total = 0, Fraction(0)
    for count, part in ((a0, int(lengths[0])), (n_c - a0, int(lengths[1]))):
        term = _ld_term(count, part, ratio)
        if term is None:
            infinite += 1
        else:
            total += term
    return infinite, total


def _largest_remainder(
    counts: Int64Array, lengths: Int64Array, frac: Int64Array, extra: int, first_rank: Int64Array
) -> Int64Array:
    """NOTE [stratified-v2] step 2': the classes that get their extra sample in part 0."""
    n = int(lengths.sum())
    candidates = np.flatnonzero(frac > 0)
    if extra <= 0:
        return np.empty(0, dtype=np.int64)
    by_frac = candidates[np.lexsort((first_rank[candidates], -frac[candidates]))]
    boundary = int(frac[by_frac[extra - 1]])
    above = by_frac[frac[by_frac] > boundary]
    tied = [int(c) for c in by_frac[frac[by_frac] == boundary]]
    needed = extra - above.shape[0]
    if needed < len(tied):

        def gain(c: int) -> tuple[int, Fraction, int]:
            n_c, low = int(counts[c]), int(counts[c]) * int(lengths[0]) // n
            up_inf, up = _rounding_cost(n_c, low + 1, lengths, n)
            down_inf, down = _rounding_cost(n_c, low, lengths, n)
            return (up_inf - down_inf, up - down, int(first_rank[c]))

        tied.sort(key=gain)
    chosen = np.concatenate([above, np.array(tied[:needed], dtype=np.int64)])
    return chosen.astype(np.int64)


def _terms(
    per_part: npt.NDArray[np.float64],
    sizes: npt.NDArray[np.float64],
    ratios: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """LD's terms ``|a / (L - a) - r|`` (infinite where ``a == L``), elementwise.

    ``per_part[..., j, l]``: samples of part ``j`` carrying ``l``; ``sizes[j]`` the parts'
    lengths; ``ratios[l] = n_l / (n - n_l)``.
    """
    size = sizes[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.abs(per_part / (size - per_part) - ratios)
    out: npt.NDArray[np.float64] = np.where(size == per_part, math.inf, terms)
    return out


def _ratios(totals: Int64Array, n: int) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """The labels LD counts (some but not all samples carry them), and their ``n_l / (n - n_l)``."""
    keep = (totals > 0) & (totals < n)
    whole = totals[keep].astype(np.float64)
    return keep, whole / (n - whole)


def _mean(terms: npt.NDArray[np.float64]) -> float:
    """``fsum(terms) / terms.size``: exactly rounded sum, so the same on every machine."""
    return math.fsum(terms.ravel().tolist()) / terms.size if terms.size else 0.0


def label_distribution(
    indicators: npt.NDArray[np.bool_], part_of: npt.NDArray[np.intp], num_parts: int
) -> float:
    """Sechidis's LD of a split: ``indicators[i, l]`` whether sample ``i`` carries ``l``.

    The mean, over the labels some but not all samples carry and over the parts, of
    ``|a / (L - a) - n_l / (n - n_l)|`` (infinite for a part all of whose samples carry
    the label): each term in binary64, their sum exactly rounded (``math.fsum``), so the
    same on every machine. Pass :func:`pair_indicators` of the labels for LPD.
    """
    n = indicators.shape[0]
    sizes = np.bincount(part_of, minlength=num_parts).astype(np.float64)
    per_part = np.zeros((num_parts, indicators.shape[1]), dtype=np.int64)
    np.add.at(per_part, part_of, indicators.astype(np.int64))
    keep, ratios = _ratios(indicators.sum(axis=0).astype(np.int64), n)
    return _mean(_terms(per_part[:, keep].astype(np.float64), sizes, ratios))


def pair_indicators(indicators: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Whether each sample carries each pair of labels (pairs in lexicographic order)."""
    q = indicators.shape[1]
    pairs = [(a, b) for a in range(q) for b in range(a + 1, q)]
    if not pairs:
        return np.zeros((indicators.shape[0], 0), dtype=bool)
    first = np.array([a for a, _ in pairs])
    second = np.array([b for _, b in pairs])
    out: npt.NDArray[np.bool_] = indicators[:, first] & indicators[:, second]
    return out


#: NOTE [stratified-v2] step 3': the descent runs for at most this many candidate moves
#: per pass (``U * U * m * m``), at most this many samples, and at most this many moves.
_DESCENT_CANDIDATES = 4096
_DESCENT_SAMPLES = 10_000
_DESCENT_MOVES = 256


def _descend(
    labels: LabelSets, lengths: Int64Array, rank: Int64Array, part_of: npt.NDArray[np.intp]
) -> None:
    """NOTE [stratified-v2] step 3', in place on ``part_of``."""
    n, m = labels.size, int(lengths.shape[0])
    if n > _DESCENT_SAMPLES:
        return
    indicators = np.zeros((n, labels.num_classes), dtype=bool)
    indicators[labels.sample_of_occurrence(), labels.codes.astype(np.int64)] = True
    # Distinct label sets, in the order of their first sample in seed order.
    by_seed = np.argsort(rank, kind="stable")
    rows = [indicators[i].tobytes() for i in by_seed.tolist()]
    kinds: dict[bytes, int] = {}
    for row in rows:
        kinds.setdefault(row, len(kinds))
    u = len(kinds)
    if u * u * m * m > _DESCENT_CANDIDATES:
        return
    kind_of = np.empty(n, dtype=np.int64)
    kind_of[by_seed] = [kinds[row] for row in rows]
    # The labels and the pairs LD and LPD count, as one feature matrix per label set.
    keep_labels, label_ratios = _ratios(indicators.sum(axis=0).astype(np.int64), n)
    pairs = pair_indicators(indicators)
    keep_pairs, pair_ratios = _ratios(pairs.sum(axis=0).astype(np.int64), n)
    features = np.concatenate([indicators[:, keep_labels], pairs[:, keep_pairs]], axis=1)
    q = int(keep_labels.sum())
    ratios = np.concatenate([label_ratios, pair_ratios])
    first_of_kind = np.zeros(u, dtype=np.int64)
    first_of_kind[kind_of[by_seed[::-1]]] = by_seed[::-1]  # the first sample of each kind
    kind_features = features[first_of_kind].astype(np.int64)
    sizes = lengths.astype(np.float64)
    per_part = np.zeros((m, features.shape[1]), dtype=np.int64)
    np.add.at(per_part, part_of, features.astype(np.int64))

    def objective(terms: npt.NDArray[np.float64]) -> float:
        return _mean(terms[..., :q]) + 2.0 * _mean(terms[..., q:])

    current = objective(_terms(per_part.astype(np.float64), sizes, ratios))
    for _ in range(_DESCENT_MOVES):
        # The first sample in seed order of each (label set, part).
        keys = kind_of[by_seed] * m + part_of[by_seed]
        found, where = np.unique(keys, return_index=True)
        first = {
            (key // m, key % m): int(sample)
            for key, sample in zip(found.tolist(), by_seed[where].tolist(), strict=True)
        }
        best, best_move = current - 1e-12, None
        for j1 in range(m):
            for j2 in range(j1 + 1, m):
                out_of_1 = [k for k in range(u) if (k, j1) in first]
                out_of_2 = [k for k in range(u) if (k, j2) in first]
                if not out_of_1 or not out_of_2:
                    continue
                # Every exchange of a kind of part j1 with a kind of part j2 at once.
                delta = kind_features[out_of_1][:, None, :] - kind_features[out_of_2][None, :, :]
                counts = np.broadcast_to(
                    per_part, (len(out_of_1), len(out_of_2), *per_part.shape)
                ).copy()
                counts[:, :, j1] -= delta
                counts[:, :, j2] += delta
                terms = _terms(counts.astype(np.float64), sizes, ratios)
                for a, k1 in enumerate(out_of_1):
                    for b, k2 in enumerate(out_of_2):
                        if k1 == k2:
                            continue
                        value = objective(terms[a, b])
                        if value < best:
                            best = value
                            best_move = (first[(k1, j1)], first[(k2, j2)], j1, j2)
        if best_move is None:
            return
        s1, s2, j1, j2 = best_move
        delta = features[s1].astype(np.int64) - features[s2].astype(np.int64)
        per_part[j1] -= delta
        per_part[j2] += delta
        part_of[s1], part_of[s2] = j2, j1
        current = best
