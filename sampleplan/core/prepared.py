"""Prepared plans: the arrays every stream of a plan is drawn from.

:func:`prepare_plan` turns labels and a :class:`~sampleplan.core.config.PlanConfig` into a
:class:`PreparedPlan` (its population, per-sample weights and class codes, with each
epoch's view under a schedule). Its streams are drawn by the drawer of the algorithm
its config names (NOTE [Drawing algorithms] in ``algorithms.py``); sharding, paging and
index spaces are the same for every algorithm. The client's offline fallback draws from
the cached weights with the same functions of :mod:`sampleplan.core.streams`, and the
pages of a ``hierarchical`` or scheduled plan with a :class:`PreparedPlan` rebuilt from
the cache (see NOTE [Offline streams] in ``client/_offline.py``), so the two cannot drift
apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import numpy.typing as npt

from sampleplan.core.algorithms import BATCHES, Drawer
from sampleplan.core.batches import BatchTable, batch_epoch, cut_batch_page
from sampleplan.core.codes import count_values
from sampleplan.core.config import MAX_NUM_SAMPLES, PlanConfig
from sampleplan.core.deadlines import check_deadline
from sampleplan.core.errors import InvalidPlanConfig, InvalidWeights
from sampleplan.core.labels import Labels
from sampleplan.core.labelsets import (
    LabelSets,
    hierarchical_codes,
    reduce_label_weights,
)
from sampleplan.core.lru import LRUCache
from sampleplan.core.stratify import population_indices
from sampleplan.core.streams import (
    Int64Array,
    StreamRequest,
    cut_page,
    in_space,
    rank_length,
    shard_positions,
)
from sampleplan.core.weighting import (
    check_weights,
    class_weight_table,
    resolve_class_weights,
    sample_weights,
)

#: Epochs of a scheduled plan whose weights (and drawing tables) are kept prepared.
_EPOCH_VIEWS = 8


@dataclass(frozen=True, eq=False)
class PreparedPlan:
    """Everything a stream is drawn from, computed once per plan.

    ``population`` holds the dataset index of every population position (``None`` when
    the population is the whole dataset); ``weights`` and ``codes`` are per position.
    For label-set data ``label_sets`` holds the population's label sets and ``codes`` are
    the codes algorithm ``hierarchical`` is given
    (:func:`~sampleplan.core.labelsets.hierarchical_codes`).

    NOTE [Epoch views]
        With a ``schedule`` the weights and the length depend on the epoch. ``weights``
        and ``num_samples`` are those of epoch ``epoch`` (0 for a plan as prepared);
        :meth:`at_epoch` gives the plan as another epoch sees it, a ``PreparedPlan`` with
        that epoch's weights, length and drawing tables, so statistics, summaries and
        pages of an epoch are computed from its view exactly as from a plan without a
        schedule. Every drawing method takes the epoch and goes through its view, so an
        epoch is never drawn from another epoch's weights. Without a schedule every
        epoch's view is the plan itself.
    """

    config: PlanConfig
    dataset_size: int
    num_classes: int
    population: Int64Array | None
    codes: npt.NDArray[np.unsignedinteger]
    weights: npt.NDArray[np.float64]
    num_samples: int
    label_sets: LabelSets | None = None
    epoch: int = 0
    # The last few epochs of a scheduled plan, prepared; shared by all its views.
    _views: LRUCache[int, PreparedPlan] = field(
        default_factory=lambda: LRUCache(_EPOCH_VIEWS), repr=False
    )
    batch_table: BatchTable | None = None

    def at_epoch(self, epoch: int) -> PreparedPlan:
        """The plan as epoch ``epoch`` draws it; see NOTE [Epoch views]."""
        schedule = self.config.schedule
        if schedule is None or epoch == self.epoch:
            return self

        def build() -> PreparedPlan:
            weights, num_samples = scheduled_weights(
                self.config, self.codes, self.num_classes, epoch
            )
            return replace(self, weights=weights, num_samples=num_samples, epoch=epoch)

        # ``build`` runs outside the cache's lock: two builds of one epoch give equal views.
        return self._views.get_or_build(epoch, build)

    def weights_at(self, epoch: int) -> npt.NDArray[np.float64]:
        """Per-sample weights of epoch ``epoch`` (the plan's ``weights`` without a schedule)."""
        return self.at_epoch(epoch).weights

    def num_samples_at(self, epoch: int) -> int:
        """Draws in epoch ``epoch`` (the plan's ``num_samples`` without a schedule)."""
        return self.at_epoch(epoch).num_samples

    @property
    def population_size(self) -> int:
        return int(self.codes.shape[0])

    def class_counts(self) -> npt.NDArray[np.int64]:
        """Class counts of the population (the training part when split).

        For label sets: how many population samples carry each label.
        """
        if self.label_sets is not None:
            return self.label_sets.class_counts()
        return self._class_counts.copy()

    @cached_property
    def _class_counts(self) -> npt.NDArray[np.int64]:
        counts = np.zeros(self.num_classes, dtype=np.int64)
        count_values(self.codes, counts)
        return counts

    @cached_property
    def _drawer(self) -> Drawer:
        # This view's: an epoch view of a schedule (a new PreparedPlan) has its own.
        return self.config.drawing_algorithm.prepare(self)

    def build_tables(self) -> None:
        """Build what the streams are drawn from now, not at the first page.

        Algorithm ``hierarchical``: the alias table and the members by class (seconds at
        10**8 samples). The exact path's cumulative table is left to the first page, as
        a ``torch`` plan may never be drawn by range.
        """
        check_deadline()  # NOTE [Deadlines]
        self._drawer.build()

    def rank_length(self, world_size: int) -> int:
        return rank_length(self.num_samples, world_size)

    @property
    def draws_by_range(self) -> bool:
        """Whether any range of an epoch can be drawn without drawing what precedes it.

        True for ``hierarchical`` and for ``torch`` with replacement (the exact path skips
        ahead in the generator); ``torch`` without replacement, or a single draw, must go
        through ``torch.multinomial`` whole. See NOTE [Why the stream is torch's, bit for bit]
        in ``exact.py``.
        """
        return self._drawer.draws_by_range

    def draw_range(self, epoch: int, start: int, stop: int) -> Int64Array:
        """Population positions ``[start, stop)`` of the epoch stream."""
        view = self.at_epoch(epoch)
        if view is not self:
            return view.draw_range(epoch, start, stop)
        return self._drawer.draw_range(epoch, start, stop)

    def draw_epoch(self, epoch: int) -> Int64Array:
        """The whole epoch stream (population positions), for an algorithm that
        :attr:`~sampleplan.core.algorithms.Algorithm.draws_whole_epochs` (``torch``)."""
        view = self.at_epoch(epoch)
        if view is not self:
            return view.draw_epoch(epoch)
        return self._drawer.draw_epoch(epoch)

    def draw_positions(self, epoch: int, positions: Int64Array) -> Int64Array:
        """The epoch stream at ``positions`` (increasing, but for wrap-arounds).

        Sharded pages ask for ``r, r + w, r + 2w, ...`` modulo ``num_samples``: each run
        between wrap-arounds is drawn as one range, so a page costs O(world_size * limit)
        draws wherever it is.
        """
        view = self.at_epoch(epoch)
        if view is not self:
            return view.draw_positions(epoch, positions)
        out = np.empty(positions.shape[0], dtype=np.int64)
        if positions.shape[0] == 0:
            return out
        if not self.draws_by_range:
            return self.draw_epoch(epoch)[positions]
        breaks = np.flatnonzero(np.diff(positions) < 0) + 1
        for run in np.split(np.arange(positions.shape[0]), breaks):
            lo, hi = int(positions[run[0]]), int(positions[run[-1]]) + 1
            out[run] = self.draw_range(epoch, lo, hi)[positions[run] - lo]
        return out

    @property
    def num_batches(self) -> int | None:
        """Batches per epoch of a batch plan (``None`` for a plan without ``batching``)."""
        return None if self.batch_table is None else self.batch_table.num_batches

    def rank_batches(self, world_size: int) -> int:
        """How many batches each rank gets: ``ceil(num_batches / world_size)``."""
        if self.batch_table is None:
            raise ValueError("this plan has no batching")
        return rank_length(self.batch_table.num_batches, world_size)

    def batches(
        self, request: StreamRequest, epoch_batches: Int64Array | None = None
    ) -> Int64Array:
        """A page of a rank's batches, ``(rows, batch_size)``: see
        :func:`~sampleplan.core.batches.batch_page`.

        ``epoch_batches``, when the caller holds the epoch's batches already
        (:meth:`draw_batch_epoch`), saves drawing: the page is cut from them.
        """
        if self.batch_table is None:
            raise ValueError("this plan has no batching")
        if epoch_batches is not None:
            return cut_batch_page(epoch_batches, request, self.population)
        return BATCHES.draw_page(self.batch_table, self.config.seed, request, self.population)

    def draw_batch_epoch(self, epoch: int) -> Int64Array:
        """All of epoch ``epoch``'s batches, ``(num_batches, batch_size)`` population
        positions: see :func:`~sampleplan.core.batches.batch_epoch`."""
        if self.batch_table is None:
            raise ValueError("this plan has no batching")
        return batch_epoch(self.batch_table, self.config.seed, epoch)

    def indices(self, request: StreamRequest, epoch_stream: Int64Array | None = None) -> Int64Array:
        """The requested page of a rank's stream, in the requested index space.

        ``epoch_stream``, when the caller holds the whole epoch already, saves drawing.
        """
        view = self.at_epoch(request.epoch)
        if view is not self:
            return view.indices(request, epoch_stream)
        if epoch_stream is not None:
            return cut_page(epoch_stream, self.num_samples, request, self.population)
        page = self.draw_positions(request.epoch, shard_positions(self.num_samples, request))
        return in_space(page, request.space, self.population)


def scheduled_weights(
    config: PlanConfig, codes: npt.NDArray[np.unsignedinteger], num_classes: int, epoch: int
) -> tuple[npt.NDArray[np.float64], int]:
    """Per-sample weights and draws of epoch ``epoch`` of a plan with a schedule.

    See NOTE [Schedule formulas] in ``schedules.py``; ``num_samples`` null is the
    population size, or for ``dynamic_balance`` the sum of the epoch's quotas.
    """
    schedule = config.schedule
    assert schedule is not None
    counts = np.bincount(codes, minlength=num_classes).astype(np.int64)
    weights = schedule.class_weights(counts, epoch)[codes]
    check_weights(weights, what="weights")
    num_samples = config.num_samples
    if num_samples is None:
        num_samples = schedule.num_samples(counts, epoch) or int(codes.shape[0])
    return weights, num_samples


def prepare_plan(
    labels: Labels | LabelSets, config: PlanConfig, *, max_num_samples: int | None = None
) -> PreparedPlan:
    """Validate ``config`` against ``labels`` and compute the population and its weights.

    Each stage is a pass over the dataset (seconds at 10**8 samples): the deadline is
    checked between them (NOTE [Deadlines]).
    """
    population: Int64Array | None = None
    if config.split is not None:
        population = population_indices(config.split, labels, version=config.stratify_version)
        check_deadline()

    per_sample: npt.NDArray[np.float64] | None = None
    if config.weights is not None:
        if config.weights.shape != (labels.size,):
            shape = config.weights.shape
            raise InvalidWeights(
                f"weights must have one entry per sample of the dataset ({labels.size}), "
                f"got {shape[0] if config.weights.ndim == 1 else shape}"
            )
        per_sample = config.weights if population is None else config.weights[population]

    class_weights = None
    if config.class_weights is not None:
        class_weights = resolve_class_weights(labels, config.class_weights)

    label_sets: LabelSets | None = None
    counts: npt.NDArray[np.int64] | None = None
    if isinstance(labels, LabelSets):
        label_sets = labels if population is None else labels.subset(population)
        codes = hierarchical_codes(label_sets)
    else:
        codes = labels.codes if population is None else labels.codes[population]
        if population is None:
            counts = labels.class_counts()
        else:
            counts = np.zeros(labels.num_classes, dtype=np.int64)
            count_values(codes, counts)
    size = int(codes.shape[0])
    check_deadline()
    if config.schedule is not None:
        if label_sets is not None:
            # A schedule's class weights (power of counts, catalyst's quotas) are per
            # class; a label set has no one class to take them from.
            raise InvalidPlanConfig(
                "'schedule' needs single-label data: a label-set dataset has no one class "
                "per sample for its per-class weights"
            )
        weights, num_samples = scheduled_weights(config, codes, labels.num_classes, 0)
    else:
        if label_sets is not None:
            weights = _label_set_weights(config, label_sets, class_weights, per_sample)
        else:
            assert counts is not None
            weights = sample_weights(
                config.strategy,
                codes,
                counts,
                beta=config.beta,
                class_weights=class_weights,
                per_sample=per_sample,
                threshold=config.threshold,
                version=config.weights_version,
            )
        num_samples = size if config.num_samples is None else config.num_samples
    if max_num_samples is not None and num_samples > max_num_samples:
        raise InvalidPlanConfig(
            f"num_samples={num_samples} is over this service's limit of {max_num_samples} "
            "draws per epoch"
        )
    if num_samples > MAX_NUM_SAMPLES:
        raise InvalidPlanConfig(
            "num_samples should be at most 2**62 (positions are int64), "
            f"but got num_samples={num_samples}"
        )
    check_deadline()
    config.drawing_algorithm.check_population(config, weights, num_samples)
    batch_table = None
    if config.batching is not None:
        batch_table = BATCHES.prepare(
            codes,
            labels.classes,
            config.batching,
            config.num_batches,
            label_sets=label_sets is not None,
            version=config.batches_version,
        )
    prepared = PreparedPlan(
        config=config,
        dataset_size=labels.size,
        num_classes=labels.num_classes,
        population=population,
        codes=codes,
        weights=weights,
        num_samples=num_samples,
        label_sets=label_sets,
        batch_table=batch_table,
    )
    if counts is not None:
        prepared.__dict__["_class_counts"] = counts  # counted above: not again at 10**8
    return prepared


def label_weight_table(
    config: PlanConfig, label_sets: LabelSets, class_weights: Mapping[int, float] | None
) -> npt.NDArray[np.float64] | None:
    """Each label's weight before the reduce, over a label-set population (``None`` for
    ``sample_weights``). ``class_weights`` are by label code (:func:`resolve_class_weights`)."""
    return class_weight_table(
        config.strategy,
        label_sets.class_counts(),
        beta=config.beta,
        class_weights=class_weights,
        threshold=config.threshold,
        population_size=label_sets.size,
        version=config.weights_version,
    )


def _label_set_weights(
    config: PlanConfig,
    label_sets: LabelSets,
    class_weights: Mapping[int, float] | None,
    per_sample: npt.NDArray[np.float64] | None,
) -> npt.NDArray[np.float64]:
    """Per-sample weights of a label-set population; see NOTE [Label reduce]."""
    table = label_weight_table(config, label_sets, class_weights)
    if table is None:
        assert per_sample is not None
        weights = np.ascontiguousarray(per_sample, dtype=np.float64)
    elif config.strategy == "uniform":
        weights = np.ones(label_sets.size, dtype=np.float64)
        weights[label_sets.cardinalities() == 0] = config.resolved_unlabelled_weight()
    else:
        weights = reduce_label_weights(
            label_sets, table, config.reduce, config.resolved_unlabelled_weight()
        )
    check_weights(weights, what="weights")
    return weights
