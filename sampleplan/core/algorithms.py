"""Drawing algorithms: one object per way of drawing a plan's streams, chosen once.

NOTE [Drawing algorithms]
    A plan's config names how its index stream is drawn (``algorithm``). The name becomes
    an :class:`Algorithm` in one place, the registry :data:`ALGORITHMS` (through
    :func:`algorithm_named` and ``PlanConfig.drawing_algorithm``), and every caller asks
    that object instead of comparing names:

    - its rules and limits: :meth:`Algorithm.check_config` on the config,
      :meth:`Algorithm.check_population` once the population's weights and draws are
      known (both raise :class:`~sampleplan.core.errors.InvalidPlanConfig`);
    - :meth:`Algorithm.prepare`: a :class:`Drawer` for one epoch view of a prepared plan,
      holding what the stream is drawn from (tables built at the first draw, or at
      :meth:`Drawer.build`). :meth:`Drawer.draw_range` gives positions ``[start, stop)``
      of an epoch's stream, skipping ahead where the algorithm can
      (:attr:`Drawer.draws_by_range`); :meth:`Drawer.draw_epoch` the whole epoch, for an
      algorithm that ever draws one (:attr:`Algorithm.draws_whole_epochs`: the service
      keeps such epochs in its epoch cache, bounds their draws by its
      ``max_num_samples`` and serves cached pages inline);
    - what it records in a plan's ``versions`` (:meth:`Algorithm.versions`) and what
      reproducing its stream elsewhere needs besides its version
      (:attr:`Algorithm.machine_bound`: the torch release and CPU architecture too;
      :attr:`Algorithm.needs_codes`: the population's class codes, not only its weights).

    A batch plan's batches are drawn beside its index stream by :data:`BATCHES`, an
    object of the same shape: its rules, a prepared table, a page at any offset, and a
    version of its own in the manifest.

    Mixtures of sources have a registry of the same shape, by their mixing algorithm's
    name (NOTE [Mixing algorithms] in ``core/mixtures/drawers.py``): a plan over one
    dataset must not accept a mixing name. Their ``prepare`` takes the sources and their
    proportions, and their drawer (a :class:`Drawer`) decides, for each position, the
    source and the element of that source's order, answering ``offsets[source] +
    element`` as every index stream answers population positions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Literal, get_args

import numpy as np
import numpy.typing as npt

from sampleplan.core.batches import (
    BATCHES_VERSION,
    BATCHES_VERSIONS,
    Batching,
    BatchTable,
    batch_page,
)
from sampleplan.core.errors import InvalidPlanConfig, InvalidWeights
from sampleplan.core.exact import CumulativeTable, draw_exact_with_replacement
from sampleplan.core.hierarchical import ALGORITHM_VERSION as HIERARCHICAL_VERSION
from sampleplan.core.hierarchical import HierarchicalTable, draw_hierarchical
from sampleplan.core.streams import (
    TORCH_MAX_CATEGORIES,
    Int64Array,
    StreamRequest,
    draw_torch_epoch,
    epoch_seed,
)

if TYPE_CHECKING:
    from sampleplan.core.config import PlanConfig
    from sampleplan.core.prepared import PreparedPlan

__all__ = [
    "ALGORITHMS",
    "BATCHES",
    "Algorithm",
    "AlgorithmName",
    "BatchDrawing",
    "Drawer",
    "algorithm_named",
]

#: The names a plan's ``algorithm`` may take: the keys of :data:`ALGORITHMS`.
AlgorithmName = Literal["torch", "hierarchical"]


class Drawer(ABC):
    """One epoch view's index stream, prepared by :meth:`Algorithm.prepare`."""

    #: Whether any range of an epoch can be drawn without drawing what precedes it.
    draws_by_range: bool

    def build(self) -> None:
        """Build what the stream is drawn from now, not at the first draw."""
        return None  # by default, what is drawn from is built at the first draw

    @abstractmethod
    def draw_range(self, epoch: int, start: int, stop: int) -> Int64Array:
        """Population positions ``[start, stop)`` of epoch ``epoch``'s stream."""

    @abstractmethod
    def draw_epoch(self, epoch: int) -> Int64Array:
        """The whole stream of epoch ``epoch`` (population positions)."""


class Algorithm(ABC):
    """How a plan's index stream is drawn; see NOTE [Drawing algorithms]."""

    #: The name a plan's config chooses it by, recorded as ``versions["algorithm"]``.
    name: ClassVar[AlgorithmName]
    #: The version of its stream's definition, ``versions["algorithm_version"]``. A change
    #: to what it draws is a new version.
    version: ClassVar[str]
    #: Whether an epoch's stream is ever drawn whole (else every page is drawn on its own).
    draws_whole_epochs: ClassVar[bool]
    #: Whether its stream is promised only on the torch release and CPU architecture it
    #: was drawn with.
    machine_bound: ClassVar[bool]
    #: Whether drawing needs the population's class codes, not only its weights.
    needs_codes: ClassVar[bool]

    def versions(self) -> dict[str, str]:
        """What it records in a plan's ``versions`` manifest."""
        return {"algorithm": self.name, "algorithm_version": self.version}

    def check_config(self, config: PlanConfig) -> None:
        """Refuse a config this algorithm cannot draw (``InvalidPlanConfig``)."""
        return None  # by default, any valid config can be drawn

    def check_population(
        self, config: PlanConfig, weights: npt.NDArray[np.float64], num_samples: int
    ) -> None:
        """Refuse a population (its per-sample ``weights``) and length it cannot draw."""
        return None  # by default, any population and length can be drawn

    @abstractmethod
    def prepare(self, plan: PreparedPlan) -> Drawer:
        """The drawer of ``plan``, one epoch's view (its weights, codes and length)."""


class _TorchDrawer(Drawer):
    def __init__(
        self, weights: npt.NDArray[np.float64], num_samples: int, replacement: bool, seed: int
    ) -> None:
        self._weights = weights
        self._num_samples = num_samples
        self._replacement = replacement
        self._seed = seed
        # torch.multinomial without replacement, or for a single draw, must be run whole;
        # with replacement the exact path skips ahead in the generator. See NOTE [Why the
        # stream is torch's, bit for bit] in ``exact.py``.
        self.draws_by_range = replacement and num_samples > 1

    @cached_property
    def _table(self) -> CumulativeTable:
        return CumulativeTable.from_weights(self._weights)

    def draw_range(self, epoch: int, start: int, stop: int) -> Int64Array:
        if not self.draws_by_range:
            return self.draw_epoch(epoch)[start:stop]
        # Bit-identical to torch.multinomial's stream (tested against torch), faster,
        # and a late page costs only the skipped generator outputs.
        return draw_exact_with_replacement(self._table, epoch_seed(self._seed, epoch), start, stop)

    def draw_epoch(self, epoch: int) -> Int64Array:
        if self.draws_by_range:
            return self.draw_range(epoch, 0, self._num_samples)
        return draw_torch_epoch(
            self._weights, self._num_samples, self._replacement, epoch_seed(self._seed, epoch)
        )


class TorchMultinomial(Algorithm):
    """``torch``: exactly ``WeightedRandomSampler``'s stream (``torch.multinomial``).

    Drawn with replacement by the exact path (:mod:`sampleplan.core.exact`), bit for bit
    the same; without replacement, or for a single draw, by ``torch.multinomial`` itself.
    Epochs are drawn whole when paged through (the service caches them).
    """

    name = "torch"
    version = "torch-multinomial-v1"
    draws_whole_epochs = True
    # torch.multinomial is promised neither across torch releases nor across CPU
    # architectures.
    machine_bound = True
    needs_codes = False

    def check_population(
        self, config: PlanConfig, weights: npt.NDArray[np.float64], num_samples: int
    ) -> None:
        size = int(weights.shape[0])
        if size > TORCH_MAX_CATEGORIES:
            raise InvalidPlanConfig(
                f"algorithm 'torch' draws with torch.multinomial, which takes at most 2**24 "
                f"({TORCH_MAX_CATEGORIES}) samples, but the population has {size}; "
                f"use algorithm 'hierarchical' for datasets this large"
            )
        if not config.replacement:
            positive = int(np.count_nonzero(weights))
            if num_samples > positive:
                raise InvalidPlanConfig(
                    f"replacement=false cannot draw num_samples={num_samples} distinct samples: "
                    f"only {positive} of the population's {size} samples have a positive weight"
                )

    def prepare(self, plan: PreparedPlan) -> Drawer:
        return _TorchDrawer(
            plan.weights, plan.num_samples, plan.config.replacement, plan.config.seed
        )


class _HierarchicalDrawer(Drawer):
    draws_by_range = True

    def __init__(
        self, codes: npt.NDArray[np.unsignedinteger], weights: npt.NDArray[np.float64], seed: int
    ) -> None:
        self._codes = codes
        self._weights = weights
        self._seed = seed

    @cached_property
    def _table(self) -> HierarchicalTable:
        try:
            return HierarchicalTable.build(self._codes, self._weights)
        except ValueError as exc:
            # The weights passed check_weights (finite, non-negative, a positive finite
            # sum), so what is left is their scale: a mean below float64's normal range
            # cannot be turned into alias probabilities. A caller's input, not a bug.
            raise InvalidWeights(
                f"algorithm 'hierarchical' cannot draw from these weights: {exc}"
            ) from exc

    def build(self) -> None:
        # The alias table and the members by class: seconds at 10**8 samples.
        _ = self._table

    def draw_range(self, epoch: int, start: int, stop: int) -> Int64Array:
        return draw_hierarchical(self._table, self._seed, epoch, start, stop)

    def draw_epoch(self, epoch: int) -> Int64Array:
        raise ValueError("algorithm 'hierarchical' epochs are never materialised; draw ranges")


class Hierarchical(Algorithm):
    """``hierarchical``: NOTE [hierarchical-v1], any position in O(1), any population size.

    Not torch's stream: it is defined with binary64 arithmetic, uint64 integers and
    Philox4x64-10 only (numpy, no torch), so every replica and release keeping the version
    gives the same stream. The version is the whole contract; the torch release and CPU
    architecture play no part. Its table depends on the population's class codes.
    """

    name = "hierarchical"
    version = HIERARCHICAL_VERSION
    draws_whole_epochs = False
    machine_bound = False
    needs_codes = True

    def check_config(self, config: PlanConfig) -> None:
        if not config.replacement:
            raise InvalidPlanConfig(
                "algorithm 'hierarchical' draws with replacement; set replacement=true"
            )

    def prepare(self, plan: PreparedPlan) -> Drawer:
        return _HierarchicalDrawer(plan.codes, plan.weights, plan.config.seed)


#: The algorithms by name: the one place a plan's ``algorithm`` becomes an object.
ALGORITHMS: Mapping[str, Algorithm] = {
    algorithm.name: algorithm for algorithm in (TorchMultinomial(), Hierarchical())
}
assert tuple(ALGORITHMS) == get_args(AlgorithmName)


def algorithm_named(name: str) -> Algorithm:
    """The algorithm a plan's config names (``InvalidPlanConfig`` for an unknown name)."""
    algorithm = ALGORITHMS.get(name)
    if algorithm is None:
        raise InvalidPlanConfig(
            f"unknown algorithm {name!r}; expected one of {', '.join(ALGORITHMS)}"
        )
    return algorithm


class BatchDrawing:
    """A batch plan's batches (NOTE [batches-v1]), drawn beside its index stream.

    The same shape as an :class:`Algorithm`: its rules, a prepared table
    (:class:`~sampleplan.core.batches.BatchTable`), a page at any offset in O(page), and
    its version in the plan's ``versions`` (under ``batches``). The definition uses
    integers and Philox only: its version is the whole contract.
    """

    name = "batches"
    #: The definition a plan gets unless its ``definitions`` name another.
    version = BATCHES_VERSION
    #: Every definition drawn here (NOTE [batches-v1], NOTE [batches-v2]).
    known_versions = BATCHES_VERSIONS

    def versions(self, version: str = BATCHES_VERSION) -> dict[str, str]:
        return {"batches": version}

    def check_config(self, config: PlanConfig) -> None:
        if not config.replacement:
            # Batches take members without replacement within each class's cycle whatever
            # 'replacement' says; accepting false would suggest it changed something.
            raise InvalidPlanConfig(
                "'batching' draws each class's members without replacement, cycle by cycle, "
                "and repeats a class once it is used up; replacement=false has no meaning "
                "for it: leave replacement at true"
            )

    def reproduction_problems(self, versions: Mapping[str, str]) -> list[str]:
        """Why the batches ``versions`` records cannot be drawn here (empty: they can)."""
        recorded = versions.get("batches")
        if recorded in self.known_versions:
            return []
        return [
            f"they are defined by {recorded!r}, this code implements "
            f"{', '.join(map(repr, self.known_versions))}"
        ]

    def prepare(
        self,
        codes: npt.NDArray[np.unsignedinteger] | npt.NDArray[np.int64],
        class_names: Sequence[object],
        batching: Batching,
        num_batches: int | None,
        *,
        label_sets: bool = False,
        version: str = BATCHES_VERSION,
    ) -> BatchTable:
        """The table the batches are drawn from: see :meth:`BatchTable.build`."""
        if label_sets:
            # A batch contract counts members of one class per sample; a sample with
            # several labels (or none) has no one class to count under.
            raise InvalidPlanConfig(
                "'batching' needs single-label data: a label-set dataset has no one class "
                "per sample for its per-class quotas"
            )
        return BatchTable.build(codes, class_names, batching, num_batches, version)

    def draw_page(
        self,
        table: BatchTable,
        seed: int,
        request: StreamRequest,
        population: Int64Array | None,
    ) -> Int64Array:
        """A page of a rank's batches, ``(rows, batch_size)``: see :func:`batch_page`."""
        return batch_page(table, seed, request, population)


#: The batch drawing (``batches-v1`` and ``batches-v2``, as a plan's definitions choose).
BATCHES = BatchDrawing()
