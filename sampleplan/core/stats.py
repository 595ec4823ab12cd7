"""Statistics of a plan: what each class gets from the draw, and how much of it is new.

NOTE [Coverage statistics]
    Let ``p_i = w_i / sum(w)`` be the probability that one draw picks population sample
    ``i`` and ``N`` the draws per epoch (``num_samples``).

    With replacement (every ``torch`` plan with ``replacement=true``, and every
    ``hierarchical`` plan) the draws are independent, so, exactly:

    - expected draws of class ``c``: ``N * sum_{i in c} p_i``;
    - probability that sample ``i`` is drawn at least once in an epoch:
      ``1 - (1 - p_i)^N``, computed as ``-expm1(N * log1p(-p_i))`` so that tiny ``p_i``
      and huge ``N`` keep their precision;
    - expected distinct samples of class ``c``: the sum of that over its samples; its
      coverage is that over the class count; its mean repeats per drawn sample is
      expected draws over expected distinct samples (a ratio of expectations).

    Without replacement every draw is a new sample (repeats are exactly 1), and sample
    ``i`` is drawn with its *inclusion probability* ``pi_i``. For successive sampling
    proportional to weight, which is what ``torch.multinomial`` does, ``pi_i`` has no
    closed form. It is exact here in two cases: every positive-weight sample is drawn
    (``pi_i = 1``), or all positive weights are equal (``pi_i = N / n_positive``).
    Otherwise we use the standard approximation ``pi_i = 1 - exp(-w_i t)`` with ``t``
    solving ``sum_i pi_i = N`` (exact in expectation of the total, within about 2 % of
    the empirical per-class figures on plans of a few samples, closer on larger ones),
    and report ``exact = False``.

NOTE [Label-set statistics]
    With label sets a draw brings every label of the drawn sample, so the rows count
    label *occurrences*: ``expected_draws`` of label ``c`` is the expected number of
    drawn samples carrying ``c`` per epoch (``N * sum_{i carries c} p_i`` with
    replacement), ``expected_share`` is that over the expected occurrences of all labels
    (the label's share of the label occurrences among the draws), ``data_share`` the
    label's share of the label occurrences in the population, ``expected_distinct_samples``
    sums ``seen_i`` over the samples carrying ``c``, and ``class_weight`` is the label's
    weight before the reduce (``t_c``; the repeat factor ``r_c`` for ``repeat_factor``).
    A sample with several labels counts in each; unlabelled samples in none (their
    number and expected draws are in :class:`LabelSetStats`). Shares cannot all be equal:
    drawing a sample for a rare label also draws its frequent companions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from sampleplan.core.codes import first_positions
from sampleplan.core.labelsets import LabelSets
from sampleplan.core.prepared import PreparedPlan, label_weight_table
from sampleplan.core.streams import StreamRequest
from sampleplan.core.weighting import resolve_class_weights

Float64Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ClassStats:
    """One row of a plan's class table (classes in canonical order).

    ``expected_coverage`` is ``None`` for a class with no sample in the population, and
    ``mean_repeats_per_drawn_sample`` is ``None`` for a class that is never drawn.
    """

    code: int
    count: int
    class_weight: float | None
    data_share: float
    expected_share: float
    expected_draws: float
    expected_distinct_samples: float
    expected_coverage: float | None
    mean_repeats_per_drawn_sample: float | None


@dataclass(frozen=True)
class LabelSetStats:
    """What a label-set population holds and gets; see NOTE [Label-set statistics]."""

    unlabelled: int
    mean_cardinality: float
    expected_unlabelled_draws: float
    expected_mean_cardinality: float


@dataclass(frozen=True)
class PlanStats:
    """The class table and the epoch-wide coverage of a plan; see NOTE [Coverage statistics].

    The table is held as columns (one array per field, classes in canonical order), so
    that a plan of a million classes costs a few arrays, not a million objects: rows are
    made only for the classes asked for (:meth:`rows`). See NOTE [Class tables by the
    page].
    """

    counts: npt.NDArray[np.int64]
    #: Each class's weight per sample (NaN where ``has_weight`` is false).
    class_weights: Float64Array
    #: False for ``sample_weights`` plans and for classes with no sample in the population.
    has_weight: npt.NDArray[np.bool_]
    draws: Float64Array
    distinct: Float64Array
    #: What ``data_share`` and ``expected_share`` divide by.
    data_total: int
    draws_total: float
    replacement: bool
    num_samples: int
    population_size: int
    expected_distinct_samples: float
    exact: bool
    label_sets: LabelSetStats | None = None

    @property
    def num_classes(self) -> int:
        return int(self.counts.shape[0])

    @property
    def classes(self) -> list[ClassStats]:
        """Every row (a list of ``num_classes`` objects: for small tables)."""
        return self.rows(0, self.num_classes)

    @property
    def data_shares(self) -> Float64Array:
        shares: Float64Array = self.counts / self.data_total
        return shares

    @property
    def expected_shares(self) -> Float64Array:
        if self.draws_total <= 0:
            return np.zeros(self.num_classes, dtype=np.float64)
        shares: Float64Array = self.draws / self.draws_total
        return shares

    @property
    def mean_repeats(self) -> Float64Array:
        """Mean repeats per drawn sample of each class (NaN for a class never drawn)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            repeats = self.draws / self.distinct if self.replacement else np.ones_like(self.draws)
        result: Float64Array = np.where(self.distinct > 0, repeats, np.nan)
        return result

    def rows(self, start: int, stop: int) -> list[ClassStats]:
        """Rows ``start .. stop - 1``: O(stop - start) objects, whatever the table's size."""
        start, stop = max(0, start), min(stop, self.num_classes)
        if start >= stop:
            return []
        part = slice(start, stop)
        counts = self.counts[part].tolist()
        weights = self.class_weights[part].tolist()
        has_weight = self.has_weight[part].tolist()
        draws = self.draws[part].tolist()
        distinct = self.distinct[part].tolist()
        rows = []
        for i, c in enumerate(range(start, stop)):
            count, drawn, unique = counts[i], draws[i], distinct[i]
            rows.append(
                ClassStats(
                    code=c,
                    count=count,
                    class_weight=weights[i] if has_weight[i] else None,
                    data_share=count / self.data_total,
                    expected_share=drawn / self.draws_total if self.draws_total > 0 else 0.0,
                    expected_draws=drawn,
                    expected_distinct_samples=unique,
                    expected_coverage=unique / count if count else None,
                    mean_repeats_per_drawn_sample=(
                        (drawn / unique if self.replacement else 1.0) if unique > 0 else None
                    ),
                )
            )
        return rows

    @property
    def expected_coverage(self) -> float:
        """Expected fraction of the population drawn at least once per epoch."""
        return self.expected_distinct_samples / self.population_size

    @property
    def mean_repeats_per_drawn_sample(self) -> float:
        """Draws per epoch over expected distinct samples drawn."""
        return self.num_samples / self.expected_distinct_samples


def _seen_with_replacement(p: Float64Array, num_samples: int) -> Float64Array:
    """``1 - (1 - p)^N`` for each ``p``, accurate for tiny ``p`` and large ``N``."""
    with np.errstate(divide="ignore"):  # p == 1 gives log1p(-1) = -inf, and a result of 1
        seen: Float64Array = -np.expm1(num_samples * np.log1p(-p))
    return seen


def _inclusion_without_replacement(
    weights: Float64Array, multiplicity: Float64Array, num_samples: int
) -> tuple[Float64Array, bool]:
    """Inclusion probability per weight value, and whether it is exact.

    ``weights[g]`` is shared by ``multiplicity[g]`` samples. See NOTE [Coverage statistics].
    """
    positive = weights > 0
    n_positive = float(multiplicity[positive].sum())
    if num_samples >= n_positive:
        return positive.astype(np.float64), True
    distinct_weights = np.unique(weights[positive])
    if distinct_weights.shape[0] == 1:
        return np.where(positive, num_samples / n_positive, 0.0), True
    # Scale so that the largest weight is 1: t then starts near 1 whatever the units.
    w = weights / distinct_weights[-1]

    def excess(t: float) -> tuple[float, float]:
        seen = -np.expm1(-w * t)
        slope = float(np.dot(multiplicity, w * np.exp(-w * t)))
        return float(np.dot(multiplicity, seen)) - num_samples, slope

    lo, hi = 0.0, 1.0
    while excess(hi)[0] < 0:
        lo, hi = hi, hi * 2.0
    t = hi
    # Safeguarded Newton: the excess is increasing and concave in t, so a Newton step
    # from below stays below the root; fall back to bisection whenever a step leaves
    # the bracket.
    for _ in range(200):
        value, slope = excess(t)
        if value == 0:
            break
        if value < 0:
            lo = t
        else:
            hi = t
        step = t - value / slope if slope > 0 else -1.0
        t_next = step if lo < step < hi else 0.5 * (lo + hi)
        if abs(t_next - t) <= 1e-15 * t:
            t = t_next
            break
        t = t_next
    return -np.expm1(-w * t), False


def plan_statistics(plan: PreparedPlan) -> PlanStats:
    """The class table and the epoch coverage of ``plan``; see NOTE [Coverage statistics]."""
    if plan.label_sets is not None:
        return _label_set_statistics(plan, plan.label_sets)
    k = plan.num_classes
    n = plan.num_samples
    counts = plan.class_counts()
    codes = plan.codes
    weights = plan.weights
    total = float(weights.sum())
    per_class_weights = plan.config.strategy != "sample_weights"

    if per_class_weights:
        # Every member of a class has the same weight: read it off its first member.
        first = first_positions(codes, k)
        has_weight = first >= 0
        class_weights = np.where(has_weight, weights[np.maximum(first, 0)], np.nan)
        # One group per class: O(classes) instead of O(samples).
        group_w = np.where(has_weight, class_weights, 0.0)
        group_n = counts.astype(np.float64)
    else:
        has_weight = np.zeros(k, dtype=np.bool_)
        class_weights = np.full(k, np.nan)
        group_w = weights
        group_n = np.ones(weights.shape[0], dtype=np.float64)

    exact = True
    if plan.config.replacement:
        p = group_w / total
        per_draw = group_n * p
        seen = _seen_with_replacement(p, n)
        draws_g = n * per_draw
    else:
        seen, exact = _inclusion_without_replacement(group_w, group_n, n)
        draws_g = group_n * seen
    distinct_g = group_n * seen

    draws: Float64Array = draws_g
    distinct: Float64Array = distinct_g
    if not per_class_weights:
        draws = np.bincount(codes, weights=draws_g, minlength=k).astype(np.float64)
        distinct = np.bincount(codes, weights=distinct_g, minlength=k).astype(np.float64)

    return PlanStats(
        counts=np.asarray(counts, dtype=np.int64),
        class_weights=class_weights.astype(np.float64),
        has_weight=has_weight,
        draws=draws,
        distinct=distinct,
        data_total=plan.population_size,
        draws_total=float(n),
        replacement=plan.config.replacement,
        num_samples=n,
        population_size=plan.population_size,
        expected_distinct_samples=float(distinct.sum()),
        exact=exact,
    )


def _label_set_statistics(plan: PreparedPlan, sets: LabelSets) -> PlanStats:
    """See NOTE [Label-set statistics]; per sample, then summed over label occurrences."""
    k = plan.num_classes
    n = plan.num_samples
    weights = plan.weights
    ones = np.ones(weights.shape[0], dtype=np.float64)
    exact = True
    if plan.config.replacement:
        p = weights / float(weights.sum())
        seen = _seen_with_replacement(p, n)
        drawn = n * p
    else:
        seen, exact = _inclusion_without_replacement(weights, ones, n)
        drawn = seen
    counts = sets.class_counts()
    codes = sets.codes
    owner = sets.sample_of_occurrence()
    draws = np.bincount(codes, weights=drawn[owner], minlength=k).astype(np.float64)
    distinct = np.bincount(codes, weights=seen[owner], minlength=k).astype(np.float64)
    table = _label_weight_table(plan, sets)
    occurrences = max(int(counts.sum()), 1)
    total_draws = float(draws.sum())
    lengths = sets.cardinalities()
    unlabelled = lengths == 0
    return PlanStats(
        counts=np.asarray(counts, dtype=np.int64),
        class_weights=np.full(k, np.nan) if table is None else np.asarray(table, np.float64),
        has_weight=np.full(k, table is not None, dtype=np.bool_),
        draws=draws,
        distinct=distinct,
        data_total=occurrences,
        draws_total=total_draws,
        replacement=plan.config.replacement,
        num_samples=n,
        population_size=plan.population_size,
        expected_distinct_samples=float(seen.sum()),
        exact=exact,
        label_sets=LabelSetStats(
            unlabelled=int(np.count_nonzero(unlabelled)),
            mean_cardinality=sets.mean_cardinality(),
            expected_unlabelled_draws=float(drawn[unlabelled].sum()),
            expected_mean_cardinality=total_draws / n if n else 0.0,
        ),
    )


def _label_weight_table(plan: PreparedPlan, sets: LabelSets) -> Float64Array | None:
    """Each label's weight before the reduce (None where weights are per sample)."""
    config = plan.config
    if config.strategy in ("sample_weights", "uniform"):
        return None
    class_weights = None
    if config.class_weights is not None:
        class_weights = resolve_class_weights(sets, config.class_weights)
    return label_weight_table(config, sets, class_weights)


def expected_shares_by_epoch(
    plan: PreparedPlan, epochs: int, classes: int | None = None
) -> tuple[list[list[float]], float]:
    """Each class's expected share of the draws, for epochs ``0 .. epochs - 1``, and the
    largest share of any class in any of them.

    ``classes``: only the first that many classes' shares (the peak is still over all of
    them), so that a plan of a million classes costs an array per epoch, not a million
    floats. A plan with a schedule changes its weights by epoch; one without gives the
    same shares every epoch.
    """
    shares, peak = [], 0.0
    for epoch in range(epochs):
        epoch_shares = plan_statistics(plan.at_epoch(epoch)).expected_shares
        if epoch_shares.shape[0]:
            peak = max(peak, float(epoch_shares.max()))
        shares.append(epoch_shares[:classes].tolist())
    return shares, peak


def class_table(plan: PreparedPlan) -> list[ClassStats]:
    """Per class: count, weight, share of draws and coverage; see :func:`plan_statistics`."""
    return plan_statistics(plan).classes


def stream_digest(indices: npt.NDArray[np.integer]) -> str:
    """SHA-256 of a stream as little-endian int64 values, one after another.

    Anyone can check the stream they trained on with
    ``hashlib.sha256(np.asarray(list(sampler), dtype="<i8").tobytes()).hexdigest()``.
    """
    data = np.ascontiguousarray(indices, dtype="<i8")
    return hashlib.sha256(data.data).hexdigest()


@dataclass(frozen=True)
class StreamSummary:
    """What one rank's epoch stream holds: its length, draws per class and SHA-256."""

    length: int
    class_counts: npt.NDArray[np.int64]
    sha256: str


def summarize_stream(
    plan: PreparedPlan,
    request: StreamRequest,
    *,
    chunk: int = 1 << 20,
) -> StreamSummary:
    """Summarise the rank's whole stream for ``request``'s epoch (its page is ignored).

    Drawn in chunks, so memory stays bounded however long the stream; the digest is
    :func:`stream_digest` of the stream in ``request.space``. A plan that cannot draw
    ranges (``torch`` without replacement, at most 2**24 draws, or a single draw) has its
    epoch drawn once and cut, rather than drawn again for every chunk.
    """
    plan = plan.at_epoch(request.epoch)  # a schedule's epoch has its own weights and length
    length = request.length(plan.num_samples)
    counts = np.zeros(plan.num_classes, dtype=np.int64)
    digest = hashlib.sha256()
    epoch_stream = None if plan.draws_by_range else plan.draw_epoch(request.epoch)
    for offset in range(0, length, chunk):
        page = replace(request, offset=offset, limit=chunk, space="population")
        positions = plan.indices(page, epoch_stream)
        counts += stream_class_counts(plan, positions)
        if request.space == "dataset" and plan.population is not None:
            positions = plan.population[positions]
        digest.update(np.ascontiguousarray(positions, dtype="<i8").data)
    return StreamSummary(length=length, class_counts=counts, sha256=digest.hexdigest())


@dataclass(frozen=True)
class BatchSummary:
    """What one rank's batches of an epoch hold: how many, their size, samples per class
    and SHA-256."""

    num_batches: int
    batch_size: int
    class_counts: npt.NDArray[np.int64]
    sha256: str


def summarize_batches(
    plan: PreparedPlan,
    request: StreamRequest,
    *,
    chunk: int = 1 << 20,
) -> BatchSummary:
    """Summarise the rank's batches for ``request``'s epoch (its page is ignored).

    Drawn in chunks of about ``chunk`` indices, so memory stays bounded however many
    batches the rank has; the digest is :func:`stream_digest` of the batches' indices in
    ``request.space``, row after row, as ``list(batch_sampler)`` flattens them.
    """
    table = plan.batch_table
    if table is None:
        raise ValueError("this plan has no batching")
    length = request.length(table.num_batches)
    counts = np.zeros(plan.num_classes, dtype=np.int64)
    digest = hashlib.sha256()
    step = max(1, chunk // table.batch_size)
    for offset in range(0, length, step):
        page = plan.batches(replace(request, offset=offset, limit=step, space="population"))
        counts += stream_class_counts(plan, page.reshape(-1))
        if request.space == "dataset" and plan.population is not None:
            page = plan.population[page]
        digest.update(np.ascontiguousarray(page, dtype="<i8").data)
    return BatchSummary(
        num_batches=length,
        batch_size=table.batch_size,
        class_counts=counts,
        sha256=digest.hexdigest(),
    )


def stream_class_counts(
    plan: PreparedPlan, positions: npt.NDArray[np.integer]
) -> npt.NDArray[np.int64]:
    """How many draws of each class a stream of population positions holds.

    For label sets: occurrences of each label among the drawn samples.
    """
    sets = plan.label_sets
    if sets is not None:
        per_sample = np.bincount(positions, minlength=sets.size)
        return np.bincount(
            sets.codes, weights=per_sample[sets.sample_of_occurrence()], minlength=plan.num_classes
        ).astype(np.int64)
    return np.bincount(plan.codes[positions], minlength=plan.num_classes).astype(np.int64)
