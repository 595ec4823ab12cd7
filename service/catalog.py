"""The catalog: datasets and plans as the HTTP layer sees them.

It joins the sampling core and the store: labels and configs are validated and hashed by
the core, written by the store, and read back into prepared plans, which are kept in a
small LRU because preparing one (decompressing labels, splitting, weighting) costs far
more than drawing a page. Drawn epochs of algorithm ``torch`` (and of mixtures) are kept
too, in an :class:`~sampleplan.service.epoch_cache.EpochCache` bounded by bytes, so that
paging through an epoch draws it once; see NOTE [When an epoch is drawn whole].
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from threading import get_ident
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from prometheus_client import Counter, Histogram

from sampleplan.core.algorithms import BATCHES
from sampleplan.core.batches import batching_from_json
from sampleplan.core.config import PlanConfig, plan_id
from sampleplan.core.errors import InvalidPlanConfig
from sampleplan.core.labels import Labels, labels_from_codes
from sampleplan.core.labelsets import LabelSets, label_sets_from_parts
from sampleplan.core.lru import LRUCache
from sampleplan.core.mixtures import MixtureDrawer, SourceShare, mixture_page, mixture_shares
from sampleplan.core.prepared import PreparedPlan, prepare_plan
from sampleplan.core.schedules import schedule_from_json
from sampleplan.core.splitting import split_from_canonical
from sampleplan.core.stats import PlanStats, plan_statistics
from sampleplan.core.streams import (
    Int64Array,
    PageBounds,
    Space,
    StreamRequest,
    cut_page,
    in_space,
)
from sampleplan.core.versions import mixture_versions, plan_versions
from sampleplan.service.config import Settings
from sampleplan.service.epoch_cache import EpochCache, EpochTexts
from sampleplan.service.errors import (
    DatasetNotFound,
    InvalidStreamRequest,
    NotForMixtures,
    PayloadTooLarge,
    PlanNotFound,
)
from sampleplan.service.metrics import ServiceMetrics, observe_in_row, thread_row
from sampleplan.service.mixture_plans import (
    MixturePlan,
    SourceInput,
    build_mixture,
    canonical_request,
    mixture_plan,
    mixture_plan_id,
)
from sampleplan.service.storage import (
    DatasetRecord,
    LengthsRecord,
    MixturePlanRecord,
    PlanRecord,
    PlanStore,
)


@dataclass(frozen=True)
class DatasetInfo:
    id: str
    label_kind: str
    size: int
    classes: list[Any]
    counts: list[int]
    #: Label sets only (else ``None``): samples with no label, and labels per sample.
    unlabelled: int | None = None
    label_cardinality: float | None = None
    #: Datasets with token lengths only (else ``None``): their sum, and the labels' own id.
    total_tokens: int | None = None
    labels_dataset_id: str | None = None

    @property
    def multi_label(self) -> bool:
        return self.unlabelled is not None


@dataclass(frozen=True, eq=False)
class Plan:
    """A stored plan: its record and its prepared arrays."""

    id: str
    dataset_id: str
    config: dict[str, Any]
    versions: dict[str, str]
    classes: list[Any]
    prepared: PreparedPlan


def dataset_record(labels: Labels | LabelSets) -> DatasetRecord:
    offsets = None
    if isinstance(labels, LabelSets):
        offsets = np.ascontiguousarray(labels.offsets, dtype="<i8").tobytes()
    return DatasetRecord(
        id=labels.digest(),
        label_kind=labels.kind,
        size=labels.size,
        classes=list(labels.classes),
        counts=labels.class_counts().tolist(),
        codes_dtype=labels.codes.dtype.str,
        codes=np.ascontiguousarray(
            labels.codes, dtype=labels.codes.dtype.newbyteorder("<")
        ).tobytes(),
        offsets=offsets,
    )


def labels_from_record(record: DatasetRecord) -> Labels | LabelSets:
    codes = np.frombuffer(record.codes, dtype=np.dtype(record.codes_dtype))
    kind: Literal["int", "str"] = "int" if record.label_kind == "int" else "str"
    if record.offsets is not None:
        offsets = np.frombuffer(record.offsets, dtype="<i8")
        return label_sets_from_parts(kind, record.classes, offsets, codes)
    return labels_from_codes(kind, record.classes, codes)


def config_from_canonical(canonical: Mapping[str, Any], weights: bytes | None) -> PlanConfig:
    """Rebuild the :class:`PlanConfig` a stored plan was created from."""
    return PlanConfig(
        strategy=canonical["strategy"],
        beta=canonical.get("beta"),
        class_weights=canonical.get("class_weights"),
        weights=np.frombuffer(weights, dtype="<f8") if weights is not None else None,
        split=split_from_canonical(canonical.get("split")),
        num_samples=canonical["num_samples"],
        replacement=canonical["replacement"],
        seed=canonical["seed"],
        algorithm=canonical["algorithm"],
        label_reduce=canonical.get("label_reduce"),
        unlabelled_weight=canonical.get("unlabelled_weight"),
        threshold=canonical.get("threshold"),
        schedule=schedule_from_json(canonical.get("schedule")),
        batching=batching_from_json(canonical.get("batching")),
        num_batches=canonical.get("num_batches"),
        definitions=canonical.get("definitions"),
    )


def build_plan(
    labels: Labels | LabelSets, config: PlanConfig, *, max_num_samples: int | None = None
) -> Plan:
    """Prepare a plan and name it, storing nothing (the catalog and ``sampleplan plan`` use it)."""
    prepared = prepare_plan(labels, config, max_num_samples=max_num_samples)
    canonical = config.canonical(prepared.num_samples, prepared.num_batches)
    dataset_id = labels.digest()
    return Plan(
        id=plan_id(dataset_id, canonical),
        dataset_id=dataset_id,
        config=canonical,
        versions=plan_versions(config),
        classes=list(labels.classes),
        prepared=prepared,
    )


#: Most values of a page that :meth:`Catalog.page_at_hand` serves on the event loop: a
#: cached page of 4096 indices is cut and written as JSON in well under a millisecond.
INLINE_PAGE_VALUES = 4096

#: Memory for cached epochs' numbers written as JSON (NOTE [Numbers written once] in
#: ``epoch_cache.py``): a dozen epochs of the largest size written.
_EPOCH_TEXT_BYTES = 64 << 20

#: Memory for the labels of recently uploaded datasets (``Catalog._recent_labels``).
_RECENT_LABELS_BYTES = 256 << 20


#: Bytes of class tables (PlanStats columns) kept, so that paging through a plan of many
#: classes computes its table once (NOTE [Class tables by the page]).
_STATISTICS_BYTES = 256 << 20


def _stats_nbytes(stats: PlanStats) -> int:
    arrays = (stats.counts, stats.class_weights, stats.has_weight, stats.draws, stats.distinct)
    return sum(int(a.nbytes) for a in arrays)


def _nbytes(labels: Labels | LabelSets) -> int:
    extra = labels.offsets.nbytes if isinstance(labels, LabelSets) else 0
    return int(labels.codes.nbytes) + int(extra)


class EpochStreams(Protocol):
    """One epoch's view of what streams are drawn from, as :meth:`Catalog.stream_page`
    draws a page of it: a :class:`PreparedPlan` (its epoch's view) or a mixture's epoch
    (:class:`MixtureEpoch`)."""

    @property
    def num_samples(self) -> int: ...

    @property
    def population(self) -> Int64Array | None: ...

    @property
    def draws_by_range(self) -> bool: ...

    def indices(
        self, request: StreamRequest, epoch_stream: Int64Array | None = None
    ) -> Int64Array: ...

    def draw_epoch(self, epoch: int) -> Int64Array: ...


# NOTE [Mixture epochs drawn whole]
#     A mixture's page used to be drawn by position for every request (``mixture_page``:
#     the drawer's ``draw_range`` over the page's runs of positions), however many
#     requests paged through the same epoch. A mixture's epoch now goes through
#     :meth:`Catalog.stream_page` as a plan's does, by NOTE [When an epoch is drawn
#     whole]: :class:`MixtureEpoch` is the epoch as that code reads a prepared plan (it
#     draws by range; its population is its own space, ``ConcatDataset`` positions, so
#     ``space`` changes nothing). A lone first request for less than half of a cold epoch
#     gets its page drawn alone, by ``mixture_page`` as before; a second request draws the
#     whole epoch (``draw_range(epoch, 0, num_samples_at(epoch))``, in chunks) into the
#     epoch cache under the mixture plan's id and the epoch, once (NOTE [Single flight]),
#     and every page is then cut from it as a plan's page is (``cut_page``, the same
#     deal). A range of a mixture's epoch is the same values however it is drawn, so the
#     pages are the ones ``mixture_page`` gives. Only an epoch the cache can keep (its
#     int64 values within ``epoch_cache_bytes``, its length within ``max_num_samples``)
#     is drawn whole: an epoch it could not keep would be drawn again by every other
#     request. The metrics are a mixture's as before: draw time and indices served
#     labelled by the mixing algorithm, and now a whole epoch drawn counted by it too.
#     A small page of a cached epoch is then at hand (:meth:`Catalog.page_at_hand`, and at
#     the floor :meth:`Catalog.page_at_floor`), the epoch's length being its cached
#     stream's (an ``hf-interleave`` epoch's length is found by drawing it: never on the
#     event loop).


class MixtureEpoch:
    """Epoch ``epoch`` of a mixture's stream as :meth:`Catalog.stream_page` draws pages
    of it; see NOTE [Mixture epochs drawn whole]."""

    __slots__ = ("drawer", "num_samples")

    #: ``ConcatDataset`` positions are the mixture's population and its dataset space.
    population = None
    draws_by_range = True

    def __init__(self, drawer: MixtureDrawer, num_samples: int) -> None:
        self.drawer = drawer
        self.num_samples = num_samples

    def indices(self, request: StreamRequest, epoch_stream: Int64Array | None = None) -> Int64Array:
        if epoch_stream is None:
            return mixture_page(self.drawer, request)
        return cut_page(epoch_stream, self.num_samples, request)

    def draw_epoch(self, epoch: int) -> Int64Array:
        return self.drawer.draw_epoch(epoch)


class _FloorFacts:
    """What :meth:`Catalog.page_at_floor` needs of a plan or a mixture plan, found once;
    and the rows of its algorithm's draw metrics of the thread that serves the floor (NOTE
    [Counting per thread] in ``metrics.py``)."""

    __slots__ = (
        "at_hand",
        "bounds",
        "draw_row",
        "draw_seconds",
        "indices_served",
        "num_samples",
        "plan",
        "population",
        "served_row",
        "thread",
    )

    def __init__(self, plan: Plan | MixturePlan, metrics: ServiceMetrics | None) -> None:
        self.plan = plan
        #: The epochs' length, ``None`` for a mixture: its cached stream's
        #: (NOTE [Mixture epochs drawn whole]).
        self.num_samples: int | None
        algorithm: str
        if isinstance(plan, MixturePlan):
            algorithm = plan.mixture.mixing.algorithm
            self.at_hand = True  # whenever its epoch is cached
            self.num_samples = None
            self.population: Int64Array | None = None
        else:
            prepared = plan.prepared
            config = prepared.config
            algorithm = config.algorithm
            self.at_hand = config.drawing_algorithm.draws_whole_epochs and config.schedule is None
            self.num_samples = prepared.num_samples
            self.population = prepared.population
        self.draw_seconds: Histogram | None = None
        self.indices_served: Counter | None = None
        if metrics is not None:
            self.draw_seconds, self.indices_served = metrics.stream_children(algorithm)
        self.thread = -1
        self.draw_row: list[float] | None = None
        self.served_row: list[float] | None = None
        self.bounds: Sequence[float] = ()

    def count(self, seconds: float, values: int) -> None:
        """Observe a page's time and count its values, as ``stream_page`` does."""
        thread = get_ident()
        if thread != self.thread and self.draw_seconds is not None:
            assert self.indices_served is not None  # found with draw_seconds
            self.draw_row = thread_row(self.draw_seconds)
            self.served_row = thread_row(self.indices_served)
            self.bounds = self.draw_seconds._upper_bounds
            self.thread = thread
        draw_row, served_row = self.draw_row, self.served_row
        if draw_row is not None and served_row is not None:
            # NOTE [Counting per thread]: this thread's rows.
            observe_in_row(draw_row, self.bounds, seconds)
            served_row[0] += values
        elif self.draw_seconds is not None and self.indices_served is not None:
            self.draw_seconds.observe(seconds)
            self.indices_served.inc(values)


class Catalog:
    """Creates and reads datasets and plans; draws streams from cached prepared plans."""

    def __init__(
        self, store: PlanStore, settings: Settings, metrics: ServiceMetrics | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._plans: LRUCache[str, Plan] = LRUCache(settings.plan_cache_size)
        self.epochs = EpochCache(settings.epoch_cache_bytes)
        self.epoch_texts = EpochTexts(_EPOCH_TEXT_BYTES)
        # Per plan, what page_at_floor asks of it on every request, found once.
        self._floor_facts: dict[str, _FloorFacts] = {}
        # Labels of the last datasets uploaded, so the plan that usually follows an upload
        # does not read them back and decompress them; bounded by bytes of codes.
        self._recent_labels: LRUCache[str, Labels | LabelSets] = LRUCache(
            _RECENT_LABELS_BYTES, size=_nbytes
        )
        self._statistics: LRUCache[tuple[str, int], PlanStats] = LRUCache(
            _STATISTICS_BYTES, size=_stats_nbytes
        )
        # Mixture plans (their drawers keep the sequential algorithms' checkpoints) and
        # their sources' shares by epoch.
        self._mixtures: LRUCache[str, MixturePlan] = LRUCache(settings.plan_cache_size)
        self._shares: LRUCache[tuple[str, int], list[SourceShare]] = LRUCache(1024)

    # -- datasets -------------------------------------------------------------------------

    def check_size(self, labels: Labels | LabelSets) -> None:
        if labels.size > self.settings.max_labels:
            raise PayloadTooLarge(
                f"the dataset has {labels.size} labels; "
                f"this service takes at most {self.settings.max_labels}"
            )

    def create_dataset(
        self, labels: Labels | LabelSets, lengths: Int64Array | None = None
    ) -> tuple[DatasetInfo, bool]:
        """Store labels (and per-sample token lengths); ``True`` if the dataset is new.

        With lengths the dataset's id names labels and lengths together
        (:func:`lengths_dataset_id`); the labels are stored under their own id too.
        """
        self.check_size(labels)
        record = dataset_record(labels)
        if lengths is not None:
            lengths_record = LengthsRecord(
                id=lengths_dataset_id(record.id, lengths),
                labels_id=record.id,
                total=int(lengths.sum()),
                lengths=np.ascontiguousarray(lengths, dtype="<i8").tobytes(),
            )
            created, labels_created = self.store.put_lengths(lengths_record, record)
            self._recent_labels.put(record.id, labels)
            if self.metrics is not None:
                self.metrics.datasets_created.inc(int(created) + int(labels_created))
            return _dataset_info(record, lengths_record), created
        # Compressing a large dataset costs more than asking whether it is there already.
        created = not self.store.dataset_exists(record.id) and self.store.put_dataset(record)
        self._recent_labels.put(record.id, labels)
        if created and self.metrics is not None:
            self.metrics.datasets_created.inc()
        return _dataset_info(record), created

    def get_dataset(self, dataset_id: str) -> DatasetInfo:
        record = self.store.get_dataset(dataset_id)
        if record is not None:
            return _dataset_info(record)
        lengths = self.store.get_lengths(dataset_id)
        if lengths is None:
            raise DatasetNotFound(f"no dataset has id {dataset_id!r}")
        return _dataset_info(self._dataset_record(lengths.labels_id), lengths)

    def token_lengths(self, dataset_id: str) -> Int64Array:
        """The per-sample token counts of a dataset uploaded with them (404 otherwise)."""
        record = self.store.get_lengths(dataset_id)
        if record is None:
            if self.store.dataset_exists(dataset_id):
                raise DatasetNotFound(
                    f"dataset {dataset_id!r} was uploaded without token lengths "
                    "(no 'length_column')"
                )
            raise DatasetNotFound(f"no dataset has id {dataset_id!r}")
        self.check_page(len(record.lengths) // 8)
        return np.frombuffer(record.lengths, dtype="<i8").astype(np.int64)

    def codes(self, dataset_id: str) -> npt.NDArray[np.int64]:
        """Class index of every sample of the dataset (into its sorted classes), as int64.

        For label sets: one code per label occurrence, sample by sample (the CSR codes;
        :meth:`offsets` says where each sample's start). The offline fallback needs them
        for ``hierarchical`` plans, whose table depends on the population's classes, not
        only on its weights.
        """
        record = self._dataset_record(dataset_id)
        codes = np.frombuffer(record.codes, dtype=np.dtype(record.codes_dtype))
        self.check_page(int(codes.shape[0]))
        return codes.astype(np.int64)

    def offsets(self, dataset_id: str) -> npt.NDArray[np.int64]:
        """A label-set dataset's CSR offsets (``size + 1``); 404 for single-label data."""
        record = self._dataset_record(dataset_id)
        if record.offsets is None:
            raise DatasetNotFound(
                f"dataset {dataset_id!r} has single labels, not label sets: it has no offsets"
            )
        self.check_page(record.size + 1)
        return np.frombuffer(record.offsets, dtype="<i8").astype(np.int64)

    def _dataset_record(self, dataset_id: str) -> DatasetRecord:
        """The stored labels of ``dataset_id`` (a dataset with lengths: its labels')."""
        record = self.store.get_dataset(dataset_id)
        if record is None:
            lengths = self.store.get_lengths(dataset_id)
            if lengths is not None:
                record = self.store.get_dataset(lengths.labels_id)
        if record is None:
            raise DatasetNotFound(f"no dataset has id {dataset_id!r}")
        return record

    # -- plans ----------------------------------------------------------------------------

    def build_plan(self, labels: Labels | LabelSets, config: PlanConfig) -> Plan:
        """Validate and prepare a plan without storing it (``POST /v1/sample`` stops here)."""
        self.check_size(labels)
        # An epoch drawn whole is held in memory: its length is bounded by this service.
        drawn_whole = config.drawing_algorithm.draws_whole_epochs
        limit = self.settings.max_num_samples if drawn_whole else None
        return build_plan(labels, config, max_num_samples=limit)

    def create_plan(
        self,
        config: PlanConfig,
        *,
        dataset_id: str | None = None,
        labels: Labels | LabelSets | None = None,
    ) -> tuple[Plan, bool]:
        """Create a plan from a stored dataset or inline labels; ``True`` if it is new."""
        new_dataset: DatasetRecord | None = None
        if labels is None:
            assert dataset_id is not None
            labels = self._recent_labels.peek(dataset_id) or labels_from_record(
                self._dataset_record(dataset_id)
            )
        else:
            new_dataset = dataset_record(labels)
        plan = self.build_plan(labels, config)
        # The plan's first page should cost a page, not the table (seconds at 10**8).
        plan.prepared.build_tables()
        weights = config.weights
        record = PlanRecord(
            id=plan.id,
            dataset_id=plan.dataset_id,
            config=plan.config,
            versions=plan.versions,
            weights=np.ascontiguousarray(weights, dtype="<f8").tobytes()
            if weights is not None
            else None,
        )
        created, dataset_created = self.store.put_plan_and_dataset(record, new_dataset)
        if self.metrics is not None:
            self.metrics.plans_created.inc(int(created))
            self.metrics.datasets_created.inc(int(dataset_created))
        if not created:
            # Keep what was stored first: its versions say what defined its streams.
            return self.get_plan(plan.id), False
        self._remember(plan)
        return plan, True

    def statistics(self, plan: Plan, epoch: int = 0) -> PlanStats:
        """The class table and coverage of ``plan`` in ``epoch``, computed once while kept."""
        key = (plan.id, epoch)
        stats = self._statistics.get(key)
        if stats is None:
            stats = plan_statistics(plan.prepared.at_epoch(epoch))
            self._statistics.put(key, stats)
        return stats

    def get_plan(self, plan_id: str) -> Plan:
        """A plan over one dataset; a mixture plan's id is a 422 (:class:`NotForMixtures`):
        the routes that call this serve only plans over one dataset."""
        plan = self.get_any_plan(plan_id)
        if isinstance(plan, MixturePlan):
            raise NotForMixtures(
                f"plan {plan_id!r} is a mixture of sources: this route serves plans over one "
                "dataset only (a mixture has no class table, weights, batches or runs); its "
                f"stream is GET /v1/plans/{plan_id}/indices"
            )
        return plan

    def get_any_plan(self, plan_id: str) -> Plan | MixturePlan:
        """The plan of this id, over one dataset or a mixture of sources (one namespace)."""
        cached = self.prepared_plan(plan_id)
        if cached is not None:
            return cached
        mixture = self._mixtures.get(plan_id)
        if mixture is not None:
            return mixture
        record = self.store.get_plan(plan_id)
        if record is None:
            mixture_record = self.store.get_mixture_plan(plan_id)
            if mixture_record is None:
                raise PlanNotFound(f"no plan has id {plan_id!r}")
            return self._load_mixture(mixture_record)
        labels = labels_from_record(self._dataset_record(record.dataset_id))
        prepared = prepare_plan(labels, config_from_canonical(record.config, record.weights))
        plan = Plan(
            id=record.id,
            dataset_id=record.dataset_id,
            config=record.config,
            versions=record.versions,
            classes=list(labels.classes),
            prepared=prepared,
        )
        self._remember(plan)
        return plan

    # -- mixture plans (NOTE [Mixture plans in the service]) ----------------------------------

    def create_mixture_plan(
        self,
        sources: Sequence[Mapping[str, Any]],
        mixing: Mapping[str, Any] | None,
        num_samples: int | None,
        seed: int,
    ) -> tuple[MixturePlan, bool]:
        """Validate, name and store a mixture plan; ``True`` if it is new."""
        canonical, mixture, inputs = build_mixture(
            sources, mixing, num_samples, seed, self._source_resolver()
        )
        new_id = mixture_plan_id(canonical)
        plan = mixture_plan(
            new_id, canonical, mixture_versions(mixture.mixing.algorithm), mixture, inputs
        )
        # hf-interleave: epoch 0's end (and checkpoints) now, so that a stopping strategy
        # that never ends is refused before anything is stored.
        plan.drawer.num_samples_at(0)
        created = self.store.put_mixture_plan(
            MixturePlanRecord(id=plan.id, config=plan.config, versions=plan.versions)
        )
        if self.metrics is not None:
            self.metrics.plans_created.inc(int(created))
        if not created:
            stored = self.get_any_plan(new_id)
            assert isinstance(stored, MixturePlan)
            return stored, False
        self._mixtures.put(plan.id, plan)
        return plan, True

    def _source_resolver(self) -> Callable[[Mapping[str, Any]], SourceInput]:
        """:meth:`_source_input`, reading each dataset or plan once however many sources
        name it (a mixture may have 4096)."""
        found: dict[tuple[str, str], SourceInput] = {}

        def resolve(value: Mapping[str, Any]) -> SourceInput:
            key = (
                ("plan_id", value["plan_id"])
                if "plan_id" in value
                else (
                    "dataset_id",
                    value["dataset_id"],
                )
            )
            if not isinstance(key[1], str):
                return self._source_input(value)
            if key not in found:
                found[key] = self._source_input(value)
            return found[key]

        return resolve

    def _source_input(self, value: Mapping[str, Any]) -> SourceInput:
        """A source's dataset length and token lengths, or its plan (404 if unknown)."""
        if "plan_id" in value:
            plan_id = value["plan_id"]
            source = self.get_any_plan(plan_id)
            if isinstance(source, MixturePlan):
                raise InvalidPlanConfig(
                    f"source {value.get('name')!r}: plan {plan_id!r} is a mixture; a source is "
                    "a dataset or a plan over one dataset"
                )
            size = self.store.dataset_size(source.dataset_id)
            if size is None:  # pragma: no cover - a plan's dataset is a foreign key
                raise DatasetNotFound(f"no dataset has id {source.dataset_id!r}")
            return SourceInput(length=size, plan=source.prepared)
        dataset_id = value["dataset_id"]
        size = self.store.dataset_size(dataset_id)
        if size is not None:
            return SourceInput(length=size)
        lengths = self.store.get_lengths(dataset_id)
        if lengths is None:
            raise DatasetNotFound(f"source {value.get('name')!r}: no dataset has id {dataset_id!r}")
        tokens = np.frombuffer(lengths.lengths, dtype="<i8").astype(np.float64)
        return SourceInput(
            length=int(tokens.shape[0]), token_lengths=tokens, total_tokens=lengths.total
        )

    def _load_mixture(self, record: MixturePlanRecord) -> MixturePlan:
        config = record.config
        _, mixture, inputs = build_mixture(
            canonical_request(config),
            config["mixing"],
            config["num_samples"],
            config["seed"],
            self._source_resolver(),
        )
        plan = mixture_plan(record.id, config, record.versions, mixture, inputs)
        self._mixtures.put(plan.id, plan)
        return plan

    def mixture_shares(self, plan: MixturePlan, epoch: int = 0) -> list[SourceShare]:
        """Each source's share of epoch ``epoch``, computed once while kept."""
        return self._shares.get_or_build(
            (plan.id, epoch), lambda: mixture_shares(plan.drawer, epoch)
        )

    def mixture_indices(self, plan: MixturePlan, request: StreamRequest) -> Int64Array:
        """A page of a rank's share of a mixture's epoch, checked against ``max_page``;
        timed and counted by mixing algorithm (NOTE [Mixture epochs drawn whole])."""
        epoch = MixtureEpoch(plan.drawer, plan.drawer.num_samples_at(request.epoch))
        return self._stream_page(
            epoch,
            plan.mixture.mixing.algorithm,
            self._keeps_whole(epoch.num_samples),
            (plan.id, request.epoch),
            request,
        )

    def _keeps_whole(self, num_samples: int) -> bool:
        """Whether an epoch of ``num_samples`` values (a mixture's stream, a plan's
        batches) is drawn whole: when the epoch cache can keep it (NOTE [Mixture epochs
        drawn whole], NOTE [An epoch of batches drawn whole])."""
        return (
            num_samples <= self.settings.max_num_samples
            and 8 * num_samples <= self.epochs.max_bytes
        )

    def prepared_plan(self, plan_id: str) -> Plan | None:
        """The plan if it is prepared in memory already (never reads the store)."""
        return self._plans.get(plan_id)

    def _remember(self, plan: Plan) -> None:
        self._plans.put(plan.id, plan)

    # -- arrays ---------------------------------------------------------------------------

    def check_page(self, length: int) -> None:
        if length > self.settings.max_page:
            raise InvalidStreamRequest(
                f"the page would hold {length} values; this service returns at most "
                f"{self.settings.max_page} per response: page with 'offset' and 'limit'"
            )

    # NOTE [When an epoch is drawn whole]
    #     Only an algorithm that ``draws_whole_epochs`` (``torch``; NOTE [Drawing
    #     algorithms] in ``algorithms.py``) materialises epochs, and a mixture whose
    #     epoch the cache can keep (NOTE [Mixture epochs drawn whole]). For it, a page is cut
    #     from the whole epoch stream, which comes from the epoch cache (drawn once
    #     however many requests page through it or arrive together; see NOTE [Single
    #     flight]).
    #     A prepared plan that can draw a page without drawing the epoch says so with
    #     ``draws_by_range`` (the exact path: skipping draws costs only generator
    #     outputs). Then the first request for a cold epoch, if it wants
    #     less than half of the epoch, gets its page drawn on its own: a job resuming at
    #     an offset pays for one page. A second request for the same epoch means someone
    #     is paging through it, and the epoch is drawn whole and cached.

    def epoch_in_flight(self, stream_key: Hashable, epoch: int) -> AbstractContextManager[None]:
        """Marks a request for a page of an epoch as being served, from its arrival.

        ``stream_key`` is what :meth:`stream_page` is given (a plan's id for its own
        streams). See NOTE [Held while in flight] in ``epoch_cache.py``: an epoch the cache
        cannot keep stays in memory for such requests, so they share one draw.
        """
        return self.epochs.in_flight((stream_key, epoch))

    def page_at_hand(
        self, plan_id: str, request: StreamRequest
    ) -> tuple[Plan | MixturePlan, Int64Array, int] | None:
        """The plan, its page and its epoch's length when serving the page costs no more
        than a slice of memory.

        That is: the plan is prepared in memory, its algorithm draws whole epochs
        (``torch``) and the epoch is cached, it has no schedule (an epoch's view of a
        schedule may need its weights computed), and the page holds at most
        :data:`INLINE_PAGE_VALUES` values; or the plan is a mixture in memory whose epoch
        is cached (NOTE [Mixture epochs drawn whole]), under the same bound. Then the HTTP
        layer answers on the event loop; ``None`` means the work may block (a store read,
        a draw, a large page), and it belongs in a worker thread.
        """
        plan = self.prepared_plan(plan_id)
        if plan is None:
            mixture = self._mixtures.get(plan_id)
            return None if mixture is None else self._mixture_page_at_hand(mixture, request)
        if (
            not plan.prepared.config.drawing_algorithm.draws_whole_epochs
            or plan.prepared.config.schedule is not None
        ):
            return None
        num_samples = plan.prepared.num_samples
        bounds = request.bounds(num_samples)
        if (
            bounds.stop - bounds.first > INLINE_PAGE_VALUES
            or (plan.id, request.epoch) not in self.epochs
        ):
            return None
        return plan, self.indices(plan, request), num_samples

    def _mixture_page_at_hand(
        self, plan: MixturePlan, request: StreamRequest
    ) -> tuple[MixturePlan, Int64Array, int] | None:
        """:meth:`page_at_hand` of a mixture: the epoch's length is its cached stream's."""
        key = (plan.id, request.epoch)
        stream = self.epochs.peek(key)
        if stream is None:
            return None
        num_samples = int(stream.shape[0])
        bounds = request.bounds(num_samples)
        if bounds.stop - bounds.first > INLINE_PAGE_VALUES:
            return None
        epoch = MixtureEpoch(plan.drawer, num_samples)
        page = self._stream_page(epoch, plan.mixture.mixing.algorithm, True, key, request)
        return plan, page, num_samples

    def page_at_floor(
        self,
        plan_id: str,
        fields: Mapping[str, Any],
        binary: bool,
        stream_key: Hashable | None = None,
    ) -> tuple[Plan | MixturePlan, Int64Array | None, memoryview | None, int, int] | None:
        """:meth:`page_at_hand` for the floor (NOTE [Serving at the floor] in
        ``service/api/floor.py``): the same page under the same conditions, found with the
        same lookups (the plan and the epoch refreshed, the hit counted) and timed and
        counted the same: the plan, the page, its numbers, its number of values and the
        length of the rank's stream. The numbers are the page's JSON text, or with
        ``binary`` its little-endian int64 bytes, taken from :attr:`epoch_texts` when it
        has them (a one-rank page), and the page is then ``None``; else the numbers are
        ``None``.

        ``fields`` are a stream query's (:class:`~sampleplan.service.api.streams.
        StreamQuery`), validated as it validates them; a page of one rank (the commonest)
        has its bounds computed without making the :class:`StreamRequest`
        (:func:`_bounds_at_floor`). What :meth:`page_at_hand` finds of a plan on every request (its
        algorithm, its schedule, its metrics' children) is found once per plan here. A
        mixture plan is found as a plan is, without a lock; its epoch's length is its
        cached stream's (NOTE [Mixture epochs drawn whole]), so the stream is looked up
        first.

        ``stream_key`` names another stream drawn as the plan draws (a run's: NOTE [Run
        pages at the floor] in ``run_catalog.py``); by default the plan's own.
        """
        # On the event loop, which never waits: the plans, then the mixtures.
        plan: Plan | MixturePlan | None = self._plans.get_unlocked(plan_id)
        if plan is None:
            plan = self._mixtures.get_unlocked(plan_id)
            if plan is None:
                return None
        facts = self._floor_facts.get(plan_id)
        if facts is None or facts.plan is not plan:
            facts = _FloorFacts(plan, self.metrics)
            if len(self._floor_facts) >= 4 * max(1, self.settings.plan_cache_size):
                self._floor_facts.clear()  # plans long gone from the plan cache among them
            self._floor_facts[plan_id] = facts
        if not facts.at_hand:
            return None
        key = (plan_id if stream_key is None else stream_key, fields["epoch"])
        stream = None
        num_samples = facts.num_samples  # no schedule: every epoch's view is the plan itself
        if num_samples is None:  # a mixture: the epoch is as long as its stream
            began = time.perf_counter()
            stream = self.epochs.get_unlocked(key)
            if stream is None:
                return None
            num_samples = int(stream.shape[0])
        found = _bounds_at_floor(fields, num_samples)
        if found is None:
            return None  # the route refuses it
        request, length, first, stop = found
        size = stop - first
        if size > INLINE_PAGE_VALUES:
            return None
        if size > self.settings.max_page:
            self.check_page(size)  # raises
        if stream is None:
            began = time.perf_counter()
            stream = self.epochs.get_unlocked(key)
            if stream is None:
                return None
        page = numbers = None
        if request is None:
            # A mixture's numbers are the same in either space: written once for both.
            space: Space = fields["space"] if facts.population is not None else "population"
            numbers = self.epoch_texts.numbers(
                (key, space, binary), stream, space, facts.population, first, stop, binary
            )
            if numbers is None:
                page = in_space(stream[first:stop], space, facts.population)
        else:
            page = cut_page(stream, num_samples, request, facts.population)
            size = int(page.shape[0])
        facts.count(time.perf_counter() - began, size)
        return plan, page, numbers, size, length

    # NOTE [An epoch of batches drawn whole]
    #     A batch plan's batches are drawn by position (NOTE [batches-v1]): any page costs
    #     its own batches, wherever it is, and nothing forces the epoch to be drawn whole.
    #     But a page drawn costs about 30 us per batch of 32, a page cut from the drawn
    #     epoch a slice; and the floor answers only what is a slice (NOTE [Serving at the
    #     floor]). So the epoch's batches are kept too, as one matrix ``(num_batches,
    #     batch_size)`` of population positions (``PreparedPlan.draw_batch_epoch``), in
    #     the epoch cache under ``("batches", plan_id, epoch)`` (a plan's streams are
    #     under ``(plan_id, epoch)``, a run's under ``("run <id> <created>", epoch)``: no key of
    #     one is a key of another), drawn once however many requests ask together (NOTE
    #     [Single flight]; counted by ``sampleplan_epoch_draws_total{algorithm="batches"}``).
    #     Rows are batches as drawn one by one, so a page cut from the matrix
    #     (``cut_batch_page``) is the page drawn (``batch_page``), tested so.
    #     As NOTE [When an epoch is drawn whole] has it, a lone first request for less
    #     than half of a cold epoch gets its page drawn on its own; the next request for
    #     the epoch draws it whole. An epoch the cache could not keep (its bytes over the
    #     cache's budget, or its values over ``max_num_samples``, what one epoch drawn
    #     whole may hold) is never drawn whole: each page is drawn, as it always was.

    def batches(self, plan: Plan, request: StreamRequest) -> Int64Array:
        """A page of a rank's batches of a batch plan, ``(rows, batch_size)``, checked
        against ``max_page`` (its values); see NOTE [An epoch of batches drawn whole]."""
        prepared = plan.prepared
        table = prepared.batch_table
        assert table is not None, "a batch plan's"
        bounds = request.bounds(table.num_batches)
        self.check_page((bounds.stop - bounds.first) * table.batch_size)
        key = _batches_key(plan.id, request.epoch)
        matrix = self.epochs.get(key)
        if matrix is None:
            span = (bounds.stop - bounds.first) * request.world_size
            if not self._keeps_whole(table.num_batches * table.batch_size) or (
                2 * span < table.num_batches and self.epochs.first_touch(key)
            ):
                return prepared.batches(request)
            epoch = request.epoch
            matrix = self.epochs.get_or_draw(key, lambda: self._draw_batch_epoch(prepared, epoch))
        return prepared.batches(request, epoch_batches=matrix)

    def _draw_batch_epoch(self, prepared: PreparedPlan, epoch: int) -> Int64Array:
        # Called once per single flight, as _draw_epoch.
        if self.metrics is not None:
            self.metrics.epoch_draws.labels(BATCHES.name).inc()
        return prepared.draw_batch_epoch(epoch)

    def batches_at_floor(
        self, plan_id: str, fields: Mapping[str, Any], binary: bool
    ) -> tuple[Plan, Int64Array | None, memoryview | None, int, int] | None:
        """:meth:`batches` for the floor (NOTE [Serving at the floor] in
        ``service/api/floor.py``), when the page is a cut of a cached epoch of batches of
        at most :data:`INLINE_PAGE_VALUES` values, of a plan prepared in memory: the
        plan, the page, its numbers, its rows and the rank's number of batches, as
        :meth:`page_at_floor` answers them (the numbers of a one-rank page from
        :attr:`epoch_texts`); else ``None``. ``fields`` are a batches query's
        (:class:`~sampleplan.service.api.streams.BatchesQuery`), validated as it
        validates them. Nothing is timed or counted: the route draws no metric of its
        own."""
        plan = self._plans.get_unlocked(plan_id)  # on the event loop, which never waits
        if plan is None:
            return None
        prepared = plan.prepared
        table = prepared.batch_table
        if table is None:
            return None  # the route refuses it
        found = _bounds_at_floor(fields, table.num_batches)
        if found is None:
            return None  # the route refuses it
        request, length, first, stop = found
        batch_size = table.batch_size
        size = (stop - first) * batch_size
        if size > INLINE_PAGE_VALUES:
            return None
        self.check_page(size)
        key = _batches_key(plan_id, fields["epoch"])
        matrix = self.epochs.get_unlocked(key)
        if matrix is None:
            return None
        page = numbers = None
        if request is None:
            space = fields["space"]
            numbers = self.epoch_texts.numbers(
                (key, space, binary), matrix, space, prepared.population, first, stop, binary
            )
            if numbers is None:
                page = in_space(matrix[first:stop], space, prepared.population)
        else:
            page = prepared.batches(request, epoch_batches=matrix)
        return plan, page, numbers, stop - first, length

    def indices(self, plan: Plan, request: StreamRequest) -> Int64Array:
        """A page of a rank's stream, checked against ``max_page``; timed for ``/metrics``."""
        return self.stream_page(plan.prepared.at_epoch(request.epoch), plan.id, request)

    def stream_page(
        self, prepared: PreparedPlan, stream_key: Hashable, request: StreamRequest
    ) -> Int64Array:
        """A page of ``request.epoch``'s stream drawn from ``prepared``, that epoch's view.

        ``(stream_key, epoch)`` names the epoch's stream in the epoch cache: the plan id
        for a plan's streams (a schedule's epochs differ by epoch), something else for
        streams drawn from other weights, such as a run's. The page's bounds are computed
        here, once for the request (:meth:`StreamRequest.bounds`): the core and the
        response read the same.
        """
        config = prepared.config
        return self._stream_page(
            prepared,
            config.algorithm,
            config.drawing_algorithm.draws_whole_epochs,
            (stream_key, request.epoch),
            request,
        )

    def _stream_page(
        self,
        streams: EpochStreams,
        algorithm: str,
        whole: bool,
        key: Hashable,
        request: StreamRequest,
    ) -> Int64Array:
        """:meth:`stream_page` of ``streams`` (a plan's epoch or a mixture's), whose
        metrics' label is ``algorithm`` and whose epochs are drawn whole when ``whole``;
        ``key`` names the epoch in the epoch cache."""
        bounds = request.bounds(streams.num_samples)
        self.check_page(bounds.stop - bounds.first)
        began = time.perf_counter()
        page = self._page(streams, algorithm, whole, key, request, bounds)
        if self.metrics is not None:
            draw_seconds, indices_served = self.metrics.stream_children(algorithm)
            draw_seconds.observe(time.perf_counter() - began)
            indices_served.inc(int(page.shape[0]))
        return page

    def _page(
        self,
        streams: EpochStreams,
        algorithm: str,
        whole: bool,
        key: Hashable,
        request: StreamRequest,
        bounds: PageBounds,
    ) -> Int64Array:
        """See NOTE [When an epoch is drawn whole]."""
        if not whole:
            return streams.indices(request)
        stream = self.epochs.get(key)
        if stream is None:
            span = (bounds.stop - bounds.first) * request.world_size
            if (
                streams.draws_by_range
                and 2 * span < streams.num_samples
                and self.epochs.first_touch(key)
            ):
                return streams.indices(request)
            epoch = request.epoch
            stream = self.epochs.get_or_draw(
                key, lambda: self._draw_epoch(streams, algorithm, epoch)
            )
        if request.world_size == 1:
            # One rank: the page is a contiguous slice of the epoch, shared without a copy.
            page = stream[request.start + bounds.first : request.start + bounds.stop]
            return in_space(page, request.space, streams.population)
        return streams.indices(request, epoch_stream=stream)

    def epoch_stream(self, plan: Plan, epoch: int) -> Int64Array:
        """The whole epoch stream of a ``torch`` plan (read-only), drawn once while cached."""
        prepared = plan.prepared.at_epoch(epoch)
        algorithm = prepared.config.algorithm
        return self.epochs.get_or_draw(
            (plan.id, epoch), lambda: self._draw_epoch(prepared, algorithm, epoch)
        )

    def _draw_epoch(self, streams: EpochStreams, algorithm: str, epoch: int) -> Int64Array:
        # Called once per single flight (NOTE [Single flight]): what the draws metric counts.
        if self.metrics is not None:
            self.metrics.epoch_draws.labels(algorithm).inc()
        return streams.draw_epoch(epoch)

    def weights(self, plan: Plan, epoch: int = 0) -> npt.NDArray[np.float64]:
        """Per-sample weights of epoch ``epoch`` (the same for every epoch without a schedule)."""
        self.check_page(plan.prepared.population_size)
        return plan.prepared.weights_at(epoch)


def _bounds_at_floor(
    fields: Mapping[str, Any], num_samples: int
) -> tuple[StreamRequest | None, int, int, int] | None:
    """What :meth:`StreamRequest.bounds` says of a stream (or batches) query's validated
    ``fields`` over an epoch of ``num_samples`` values (or batches), for the floor: the
    request, the length of the rank's stream, and the page's first and stop positions;
    ``None`` where the route refuses the request.

    A page of one rank (the commonest) is the rest of the epoch from ``start`` (a batches
    query has none: 0), cut to the page. Its bounds are computed here without making the
    request, whose other rules its fields' bounds already keep; the request is then
    ``None``, and the positions are the epoch's own, ``start`` added. Any other page's
    bounds are the request's, positions in the rank's stream."""
    if fields["world_size"] == 1 and fields["rank"] == 0:
        start = fields.get("start", 0)
        if start > num_samples:
            return None
        length = num_samples - start
        first = min(fields["offset"], length)
        limit = fields["limit"]
        stop = length if limit is None else min(length, first + limit)
        return None, length, start + first, start + stop
    request = StreamRequest(**fields)
    bounds = request.bounds(num_samples)
    return request, bounds.length, bounds.first, bounds.stop


def _batches_key(plan_id: str, epoch: int) -> tuple[str, str, int]:
    """What an epoch of a plan's batches is cached under (NOTE [An epoch of batches drawn
    whole])."""
    return ("batches", plan_id, epoch)


def lengths_dataset_id(labels_id: str, lengths: Int64Array) -> str:
    """The id of a dataset with token lengths: SHA-256 of its labels' id and the lengths
    (little-endian int64), so other lengths make another dataset."""
    h = hashlib.sha256(b"sampleplan/dataset-lengths/v1\n")
    h.update(labels_id.encode())
    h.update(b"\n")
    h.update(np.ascontiguousarray(lengths, dtype="<i8").tobytes())
    return h.hexdigest()


def _dataset_info(record: DatasetRecord, tokens: LengthsRecord | None = None) -> DatasetInfo:
    unlabelled = cardinality = None
    if record.offsets is not None:
        lengths = np.diff(np.frombuffer(record.offsets, dtype="<i8"))
        unlabelled = int(np.count_nonzero(lengths == 0))
        cardinality = float(lengths.sum()) / record.size if record.size else 0.0
    return DatasetInfo(
        id=record.id if tokens is None else tokens.id,
        label_kind=record.label_kind,
        size=record.size,
        classes=record.classes,
        counts=record.counts,
        unlabelled=unlabelled,
        label_cardinality=cardinality,
        total_tokens=None if tokens is None else tokens.total,
        labels_dataset_id=None if tokens is None else tokens.labels_id,
    )
