"""A plan's streams drawn on this machine, from its cached copy, by the service's own core.

NOTE [Offline streams]
    For algorithm ``torch`` a page of a rank's stream is, here::

        cut_page(draw_torch_epoch(weights, num_samples, replacement, epoch_seed(seed, epoch)),
                 num_samples, StreamRequest(...), population)

    with every function from :mod:`sampleplan.core`, as the service cuts pages. The service
    draws with replacement through :mod:`sampleplan.core.exact` instead, which reproduces
    ``torch.multinomial`` bit for bit (``tests/core/test_exact.py``), so the two cannot
    drift apart. What they cannot share is the machine: ``torch.multinomial`` is not
    promised across torch releases or CPU architectures, so the versions the plan recorded
    are checked (:func:`sampleplan.core.versions.reproduction_problems`) before anything is
    drawn, and a mismatch is refused with :class:`~client.StreamMismatchError` rather
    than producing a stream that silently differs.

    For algorithm ``hierarchical`` the table depends on the population's class codes
    (its mode and grouping), not only on its weights, so the cache holds the dataset's
    codes too. The population's codes are those at the population positions (the split
    recomputed with :func:`~sampleplan.core.splitting.split_from_canonical`), and the page is
    drawn by the service's own :class:`~sampleplan.core.prepared.PreparedPlan` (its
    ``HierarchicalTable.build(codes, weights)`` and ``draw_hierarchical``), built from
    exactly the arrays the service builds it from. That stream is defined by its version
    alone (NOTE [hierarchical-v1]), so only ``algorithm_version`` must match.

    Label-set datasets cache their offsets beside the codes; the population's codes are
    then :func:`~sampleplan.core.labelsets.hierarchical_codes` of its label sets, as the
    service computes them. A stratified split's population depends on the labels too
    (NOTE [stratified-v1], NOTE [stratified-v2]), so its plans cache the codes whatever
    their algorithm, and the population is recomputed by
    :func:`~sampleplan.core.stratify.population_indices`.

    For mixture plans, :class:`OfflineMixture` rebuilds the service's mixture with the
    same core function, :func:`~sampleplan.core.mixtures.stored.stored_mixture` (NOTE
    [Stored mixtures]), from the cached plan answer (config and the sources' lengths), the
    sources' token lengths (``unit: "tokens"``) and, for plan sources, their own cached
    entries drawn as above; pages are :func:`~sampleplan.core.mixtures.mixture_page`, as
    the service cuts them. A mixture's stream is integers, binary64 and named generators
    only: only its mixing version must be one this code draws, and every plan source's
    own conditions hold.

    For batch plans, :class:`OfflineBatches` rebuilds the service's
    :class:`~sampleplan.core.batches.BatchTable` from the same population codes and cuts
    pages with :func:`~sampleplan.core.batches.batch_page`, as the service does; the batches
    are defined by NOTE [batches-v1] or NOTE [batches-v2] alone, so only the recorded
    ``batches`` version must be one this code draws.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from sampleplan.client._cache import CachedMixture, CachedPlan, PlanCache, needs_labels
from sampleplan.client._exceptions import StreamMismatchError
from sampleplan.core.algorithms import ALGORITHMS, BATCHES
from sampleplan.core.batches import batching_from_json
from sampleplan.core.config import PlanConfig
from sampleplan.core.errors import InvalidPlanConfig
from sampleplan.core.labels import LabelKind, Labels, labels_from_codes
from sampleplan.core.labelsets import LabelSets, hierarchical_codes, label_sets_from_parts
from sampleplan.core.mixtures import MixtureDrawer, mixture_drawer, mixture_page
from sampleplan.core.mixtures.stored import stored_mixture
from sampleplan.core.prepared import PreparedPlan
from sampleplan.core.schedules import schedule_from_json
from sampleplan.core.splitting import split_from_canonical
from sampleplan.core.stratify import STRATIFY_VERSION, population_indices
from sampleplan.core.streams import StreamRequest, cut_page, draw_torch_epoch, epoch_seed
from sampleplan.core.versions import reproduction_problems

__all__ = [
    "OfflineBatches",
    "OfflineMixture",
    "OfflineStream",
    "offline_batches",
    "offline_stream",
    "population_codes",
]


def population_codes(
    cached: CachedPlan,
) -> tuple[npt.NDArray[np.int64] | None, npt.NDArray[np.unsignedinteger[Any]]]:
    """``(population, codes)``: the plan's population (``None``: the whole dataset) and
    the class codes at its positions, rebuilt from the cached dataset codes.

    The dataset's id is the hash of its labels: these are the service's labels, in the
    service's code dtype, or :class:`~client.StreamMismatchError` is raised.
    """
    labels = dataset_labels(cached)
    population = plan_population(cached, labels)
    if isinstance(labels, LabelSets):
        sets = labels if population is None else labels.subset(population)
        return population, hierarchical_codes(sets)
    return population, labels.codes if population is None else labels.codes[population]


def dataset_labels(cached: CachedPlan) -> Labels | LabelSets:
    """The dataset's labels (label sets when its offsets are cached) from the cached codes.

    The dataset's id is the hash of its labels: these are the service's labels, in the
    service's code dtype, or :class:`~client.StreamMismatchError` is raised.
    """
    plan = cached.plan
    if cached.codes is None:
        raise StreamMismatchError(
            f"the cached copy of plan {plan.id} has no class codes, which drawing it offline needs"
        )
    kind: LabelKind = "int" if cached.dataset.label_type == "int" else "str"
    labels: Labels | LabelSets
    if cached.offsets is not None:
        labels = label_sets_from_parts(kind, cached.dataset.classes, cached.offsets, cached.codes)
    else:
        labels = labels_from_codes(kind, cached.dataset.classes, cached.codes)
    if labels.digest() != plan.dataset_id:
        raise StreamMismatchError(
            f"the cached class codes of plan {plan.id} are not those of its dataset "
            f"{plan.dataset_id}"
        )
    return labels


def plan_population(
    cached: CachedPlan, labels: Labels | LabelSets | None = None
) -> npt.NDArray[np.int64] | None:
    """Dataset indices of the plan's population (``None``: the whole dataset), as the
    service selects them: ``random_split``'s, or by the stratified split's definition (NOTE
    [stratified-v1] or [stratified-v2], as the plan's ``versions`` record) from the labels."""
    split = split_from_canonical(cached.plan.config.get("split"))
    if split is None:
        return None
    if not split.stratify:
        return split.training_indices(cached.dataset.size)
    return population_indices(
        split,
        labels if labels is not None else dataset_labels(cached),
        version=cached.plan.versions.get("stratify", STRATIFY_VERSION),
    )


class OfflineBatches:
    """Pages of a cached batch plan's batches, drawn by the service's own core (or refused).

    The batches are defined by NOTE [batches-v1] or [batches-v2] alone (integers and
    Philox; no torch), so only the recorded ``batches`` version must be one this code draws.
    """

    def __init__(self, cached: CachedPlan) -> None:
        plan = cached.plan
        batching = batching_from_json(plan.config.get("batching"))
        if batching is None:
            raise StreamMismatchError(f"plan {plan.id} has no batching")
        problems = BATCHES.reproduction_problems(plan.versions)
        if problems:
            raise StreamMismatchError(
                f"cannot reproduce the batches of plan {plan.id} here: {'; '.join(problems)}"
            )
        population, codes = population_codes(cached)
        table = BATCHES.prepare(
            codes,
            cached.dataset.classes,
            batching,
            plan.config.get("num_batches"),
            version=plan.versions["batches"],
        )
        if table.num_batches != plan.config.get("num_batches"):
            raise StreamMismatchError(
                f"the cached copy of plan {plan.id} gives {table.num_batches} batches per "
                f"epoch, the plan says {plan.config.get('num_batches')}"
            )
        self.plan = plan
        self.table = table
        self._population = population

    def batches(self, request: StreamRequest) -> npt.NDArray[np.int64]:
        """The page that ``SamplePlanClient.batches`` would return for ``request``.

        ``request`` is checked here, as the service checks it (:class:`InvalidStreamRequest`).
        """
        request = request.checked()
        return BATCHES.draw_page(self.table, self.plan.seed, request, self._population)


class OfflineStream:
    """Pages of a cached plan's streams, bit-identical to the service's (or refused)."""

    def __init__(self, cached: CachedPlan) -> None:
        plan = cached.plan
        algorithm = ALGORITHMS.get(plan.algorithm)
        if algorithm is None:
            known = " and ".join(repr(name) for name in ALGORITHMS)
            raise StreamMismatchError(
                f"plan {plan.id} uses algorithm {plan.algorithm!r}, which this client cannot "
                f"reproduce offline (only {known} plans can be)"
            )
        self._scheduled = plan.config.get("schedule") is not None
        if needs_labels(plan) and cached.codes is None:
            raise StreamMismatchError(
                f"the cached copy of plan {plan.id} has no class codes, which its "
                f"'hierarchical' stream, its schedule or its stratified split needs"
            )
        problems = reproduction_problems(plan.versions)
        if problems:
            why = (
                "torch does not promise the same stream across versions or CPU architectures"
                if algorithm.machine_bound
                else "the version of its stream's definition differs"
            )
            raise StreamMismatchError(
                f"cannot reproduce the stream of plan {plan.id} here, since {why}: "
                f"{'; '.join(problems)}"
            )
        self.plan = plan
        self._algorithm = algorithm
        self._cached = cached
        self._lock = threading.Lock()
        self._epoch: tuple[int, npt.NDArray[np.int64]] | None = None
        self._population: npt.NDArray[np.int64] | None = None
        self._prepared: PreparedPlan | None = None

    def _prepared_plan(self) -> PreparedPlan:
        """The service's prepared plan, rebuilt from the cache (built once, under the lock).

        Also for a plan with a schedule: its :meth:`PreparedPlan.at_epoch` recomputes each
        epoch's weights from the population's classes, as the service does.
        """
        if self._prepared is None:
            cached, plan = self._cached, self.plan
            population, codes = population_codes(cached)
            self._population = population
            if codes.shape != cached.weights.shape:
                raise StreamMismatchError(
                    f"the cached copy of plan {plan.id} has {cached.weights.shape[0]} weights "
                    f"for a population of {codes.shape[0]}"
                )
            split = split_from_canonical(plan.config.get("split"))
            self._prepared = PreparedPlan(
                # Drawing reads the algorithm, seed and replacement only: the weights are
                # given, so PlanConfig's default strategy stands in for the one that made them.
                config=PlanConfig(
                    split=split,
                    num_samples=plan.config.get("num_samples"),
                    replacement=plan.replacement,
                    seed=plan.seed,
                    algorithm=self._algorithm.name,
                    schedule=schedule_from_json(plan.config.get("schedule")),
                ),
                dataset_size=cached.dataset.size,
                num_classes=len(cached.dataset.classes),
                population=population,
                codes=codes,
                weights=cached.weights,
                num_samples=plan.num_samples,
            )
        return self._prepared

    def prepared_plan(self) -> PreparedPlan:
        """The service's prepared plan, rebuilt from the cache (a mixture's plan source)."""
        with self._lock:
            return self._prepared_plan()

    def class_counts(self) -> npt.NDArray[np.int64]:
        """Samples of each class in the population, from the cached codes."""
        counts: npt.NDArray[np.int64] = self._prepared_plan().class_counts()
        return counts

    def _epoch_stream(self, epoch: int) -> npt.NDArray[np.int64]:
        # A sampler asks for an epoch page by page: draw the epoch once, keep the last one.
        if self._epoch is None or self._epoch[0] != epoch:
            stream = draw_torch_epoch(
                self._cached.weights,
                self.plan.num_samples,
                self.plan.replacement,
                epoch_seed(self.plan.seed, epoch),
            )
            self._epoch = (epoch, stream)
        return self._epoch[1]

    def _dataset_indices(self) -> npt.NDArray[np.int64] | None:
        split = split_from_canonical(self.plan.config.get("split"))
        if split is None:
            return None
        if self._population is None:
            self._population = plan_population(self._cached)
        return self._population

    def indices(self, request: StreamRequest) -> npt.NDArray[np.int64]:
        """The page that ``SamplePlanClient.indices`` would return for ``request``.

        ``request`` is checked here, as the service checks it (:class:`InvalidStreamRequest`).
        """
        request = request.checked()
        if not self._algorithm.draws_whole_epochs or self._scheduled:
            # Never materialised: each page is drawn on its own, as the service draws it.
            with self._lock:
                return self._prepared_plan().indices(request)
        with self._lock:
            stream = self._epoch_stream(request.epoch)
            population = self._dataset_indices() if request.space == "dataset" else None
        return cut_page(stream, self.plan.num_samples, request, population)


class OfflineMixture:
    """Pages of a cached mixture plan's streams, drawn by the service's own core (or refused).

    ``cache`` holds the entries of its plan sources (NOTE [Offline streams]).
    """

    def __init__(self, cached: CachedMixture, cache: PlanCache) -> None:
        plan = cached.plan
        assert plan.sources is not None
        problems = reproduction_problems(plan.versions)
        if problems:
            raise StreamMismatchError(
                f"cannot reproduce the stream of plan {plan.id} here: {'; '.join(problems)}"
            )
        plans: dict[str, PreparedPlan] = {}
        for row in plan.sources:
            if row.plan_id is not None and row.plan_id not in plans:
                plans[row.plan_id] = OfflineStream(cache.load(row.plan_id)).prepared_plan()
        tokens = cached.token_lengths
        if plan.config["mixing"].get("unit") == "tokens" and any(t is None for t in tokens):
            raise StreamMismatchError(
                f"the cached copy of plan {plan.id} lacks token lengths, which its "
                '"tokens" unit needs'
            )
        try:
            mixture = stored_mixture(
                plan.config,
                [row.length for row in plan.sources],
                token_lengths=[None if t is None else t.astype(np.float64) for t in tokens],
                plans=plans,
            )
        except InvalidPlanConfig as exc:
            raise StreamMismatchError(
                f"the cached copy of plan {plan.id} does not make its mixture: {exc}"
            ) from exc
        if mixture.canonical()["mixing"] != plan.config["mixing"]:
            raise StreamMismatchError(
                f"plan {plan.id} mixes by {plan.config['mixing']}, which this client reads "
                f"as {mixture.canonical()['mixing']}"
            )
        self.plan = plan
        self.drawer: MixtureDrawer = mixture_drawer(mixture)
        self._lock = threading.Lock()

    def num_samples_at(self, epoch: int) -> int:
        """The length of epoch ``epoch`` (hf-interleave's epochs differ)."""
        with self._lock:
            return self.drawer.num_samples_at(epoch)

    def indices(self, request: StreamRequest) -> npt.NDArray[np.int64]:
        """The page that ``SamplePlanClient.indices`` would return for ``request``."""
        request = request.checked()
        with self._lock:
            return mixture_page(self.drawer, request)


def offline_stream(cache: PlanCache, plan_id: str) -> OfflineStream | OfflineMixture:
    """The offline drawer of a cached plan's streams: a mixture's or a single dataset's."""
    if cache.is_mixture(plan_id):
        return OfflineMixture(cache.load_mixture(plan_id), cache)
    return OfflineStream(cache.load(plan_id))


def offline_batches(cache: PlanCache, plan_id: str) -> OfflineBatches:
    """The offline drawer of a cached batch plan's batches."""
    if cache.is_mixture(plan_id):
        raise StreamMismatchError(f"plan {plan_id} is a mixture of sources: it has no batches")
    return OfflineBatches(cache.load(plan_id))
