"""A mixture whose source weights change from epoch to epoch: a run over a mixture plan.

NOTE [Mixture runs]
    A run over a mixture plan has one weight per source (online data mixing): it starts at
    the plan's (the sources' ``weight`` with proportions ``"weights"``, else the plan's
    proportions) and its updates change them from the next epoch on, as every run's do
    (NOTE [Run updates] in ``core/runs.py``). Epoch ``e`` draws with the weights ``w_e``
    frozen for it:

    - which SOURCE each position takes is the mixture with weights ``w_e`` (proportions
      ``"weights"``, every other option of the plan kept; ``hf-interleave``'s weights
      normalised to sum to 1) at epoch ``e``: positions ``[e N, (e + 1) N)`` of its one
      stream (``mixture-v1``, ``megatron-blend``), its epoch ``e`` with ``seed + e``
      (``hf-interleave``);
    - which ELEMENT: the source's takes continue across the change. The ``t``-th take of
      source ``i`` in epoch ``e`` is its take ``base_e[i] + t``, ``base_e`` the source's
      actual takes in epochs ``0 .. e - 1`` under their own weights (``hf-interleave``
      reads every source from take 0 each epoch, as its plan does). So a ``reshuffled``
      source neither repeats nor skips an element because its weight changed.

    Weights equal to the plan's draw with the plan's own mixture, and then ``base_e`` is
    the plan's own take count at epoch ``e``: a run whose weights never change serves its
    plan's streams exactly, and the epochs before a change never change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from sampleplan.core.lru import LRUCache
from sampleplan.core.mixtures.drawers import MixtureDrawer, mixture_drawer
from sampleplan.core.mixtures.spec import Mixture

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]

#: Distinct weight vectors whose drawers (and checkpoints) a run keeps.
_DRAWERS = 16


def initial_run_weights(mixture: Mixture) -> Float64Array:
    """A run's weights before any update (NOTE [Mixture runs])."""
    if mixture.mixing.proportions == "weights":
        return np.array([float(s.weight or 0.0) for s in mixture.sources], dtype=np.float64)
    return np.array(mixture.proportions, dtype=np.float64)


def weighted_mixture(mixture: Mixture, weights: Float64Array) -> Mixture:
    """``mixture`` with its sources weighted by ``weights`` (proportions ``"weights"``);
    raises the core's ``InvalidPlanConfig`` for weights it cannot mix by."""
    w = np.asarray(weights, dtype=np.float64)
    if mixture.mixing.algorithm == "hf-interleave":
        total = float(w.sum())
        w = w / total if total > 0 else w
    sources = tuple(
        replace(source, weight=float(x)) for source, x in zip(mixture.sources, w, strict=True)
    )
    return Mixture(
        sources,
        replace(mixture.mixing, proportions="weights"),
        seed=mixture.seed,
        num_samples=mixture.num_samples,
    )


class RunMixtureDrawer(MixtureDrawer):
    """The streams of a run over ``mixture``: NOTE [Mixture runs].

    ``weights_at(e)`` gives the (frozen) source weights of epoch ``e``; it is called for
    every epoch up to the one drawn, once each while this drawer lives.
    """

    def __init__(self, mixture: Mixture, weights_at: Callable[[int], Float64Array]) -> None:
        super().__init__(mixture)
        self._weights_at = weights_at
        self._plan_drawer = mixture_drawer(mixture)
        self._initial = initial_run_weights(mixture).tobytes()
        self._drawers: LRUCache[bytes, MixtureDrawer] = LRUCache(_DRAWERS)
        self._epoch_weights: dict[int, bytes] = {}
        self._bases: list[Int64Array] = [np.zeros(len(mixture.sources), dtype=np.int64)]
        self._lock = threading.Lock()

    def drawer_at(self, epoch: int) -> MixtureDrawer:
        """The drawer of the mixture with epoch ``epoch``'s weights."""
        key = self._epoch_weights.get(epoch)
        if key is None:
            key = np.ascontiguousarray(self._weights_at(epoch), dtype=np.float64).tobytes()
            self._epoch_weights[epoch] = key
        if key == self._initial:
            return self._plan_drawer
        weights = np.frombuffer(key, dtype=np.float64)
        return self._drawers.get_or_build(
            key, lambda: mixture_drawer(weighted_mixture(self.mixture, weights))
        )

    def takes_before_epoch(self, epoch: int) -> Int64Array:
        if self.mixture.mixing.algorithm == "hf-interleave":
            return self._bases[0]
        with self._lock:
            while len(self._bases) <= epoch:
                e = len(self._bases) - 1
                drawer = self.drawer_at(e)
                taken = drawer.counts_before(e, drawer.num_samples_at(e))
                self._bases.append(self._bases[-1] + taken)
            return self._bases[epoch]

    def num_samples_at(self, epoch: int) -> int:
        return self.drawer_at(epoch).num_samples_at(epoch)

    def take_seed(self, epoch: int) -> int:
        return self.drawer_at(epoch).take_seed(epoch)

    def counts_before(self, epoch: int, position: int) -> Int64Array:
        return self.drawer_at(epoch).counts_before(epoch, position)

    def sources_range(self, epoch: int, start: int, stop: int) -> tuple[Int64Array, Int64Array]:
        drawer = self.drawer_at(epoch)
        sources, takes = drawer.sources_range(epoch, start, stop)
        shift = self.takes_before_epoch(epoch) - drawer.takes_before_epoch(epoch)
        return sources, takes + shift[sources]
