"""Where a remote sampler's plan and pages come from: the service, or this machine's cache.

NOTE [Offline fallback]
    At construction the plan, its dataset's size and its weights (and, for
    ``hierarchical`` plans, the dataset's class codes) are cached on disk (once per plan
    and machine: a plan's content never changes); for a mixture plan, its answer (the
    sources' lengths), its sources' token lengths when it mixes tokens, and an entry of
    its own for each plan source (:func:`fill_mixture_cache`). When the service cannot be reached,
    or keeps answering 5xx, the rest of the epoch is drawn locally by
    :class:`~sampleplan.client._offline.OfflineStream` with the service's own core, after checking
    that this machine reproduces the plan's streams (for ``torch`` plans: the same torch
    version and CPU architecture); otherwise
    :class:`~client.StreamMismatchError` is raised. Each new ``iter()`` tries the service
    again first.

    Both samplers go through :class:`PlanSource` (the plan's record, its cache entry and
    its offline drawer) and :class:`EpochPages` (one iteration's pages, online until the
    service fails): :class:`~client.RemoteWeightedSampler` draws offline with
    :class:`~sampleplan.client._offline.OfflineStream`,
    :class:`~client.RemoteBatchSampler` with
    :class:`~sampleplan.client._offline.OfflineBatches`, whose batches depend on the
    classes, so its entries always hold the class codes. Only an unreachable or failing
    service (:class:`~client.TransportError`, :class:`~client.ServerError`) is a reason to
    go offline: a 4xx means the request is wrong, on any replica and offline alike.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from sampleplan.client._cache import PlanCache, needs_labels
from sampleplan.client._client import SamplePlanClient
from sampleplan.client._exceptions import (
    CacheError,
    ClientRequestError,
    SamplePlanError,
    ServerError,
    TransportError,
)
from sampleplan.client._models import Plan

__all__ = ["EpochPages", "PlanSource", "fill_cache", "fill_mixture_cache"]

logger = logging.getLogger("sampleplan.client")

T = TypeVar("T")


class _Drawer(Protocol):
    """What draws a cached plan's pages on this machine (``OfflineStream``, ``OfflineBatches``)."""

    @property
    def plan(self) -> Plan: ...


DrawerT = TypeVar("DrawerT", bound=_Drawer)


class PlanSource(Generic[DrawerT]):
    """A plan's record for a remote sampler, from the service or its cached copy.

    Args:
        plan_id: the plan.
        api: the client to fetch it with; ``None`` reads the cache only.
        fallback: cache the plan and draw locally when the service is unreachable; with
            ``False`` nothing is written to disk and errors surface as they come.
        cache_dir: where plans are cached (:class:`~client.PlanCache`).
        offline: builds the drawer of the plan's pages from its cached copy, given the
            cache and the plan's id (once, when first needed); it raises
            :class:`~client.StreamMismatchError` when this machine cannot reproduce them.
        codes: cache the dataset's class codes whatever the plan (batch plans: their
            batches depend on the classes); otherwise only when :func:`needs_labels`.

    It pickles as plain data (the client pickles itself); the drawer is rebuilt on first use.
    """

    def __init__(
        self,
        plan_id: str,
        api: SamplePlanClient | None,
        *,
        fallback: bool,
        cache_dir: str | os.PathLike[str] | None,
        offline: Callable[[PlanCache, str], DrawerT],
        codes: bool = False,
    ) -> None:
        self.plan_id = plan_id
        self.api = api
        self.fallback = fallback
        self.cache = PlanCache(cache_dir) if fallback else None
        self._build_offline = offline
        self._codes = codes
        self._offline: DrawerT | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        state["_offline"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def load_plan(self, check: Callable[[Plan], object] | None = None) -> Plan:
        """The plan, from the service (cached on the way) or, when it is unreachable, the cache.

        ``check(plan)`` runs on the service's record before anything is cached: it raises
        when the sampler cannot draw that plan.
        """
        api, cache = self.api, self.cache
        if api is None:
            return self.offline(None).plan
        try:
            plan = api.get_plan(self.plan_id)
            if check is not None:
                check(plan)
            if cache is not None:
                fill_cache(api, cache, plan, codes=self._codes)
        except (TransportError, ServerError) as exc:
            if cache is None:
                raise
            # Say "using the cached copy" only once there is one: without it this raises.
            offline = self.offline(exc)
            logger.warning("sampleplan: %s; using the cached copy of plan %s", exc, self.plan_id)
            return offline.plan
        return plan

    def offline(self, cause: SamplePlanError | None) -> DrawerT:
        """The offline drawer, built once; raises (from ``cause``) when it cannot be."""
        with self._lock:
            if self._offline is None:
                assert self.cache is not None
                try:
                    self._offline = self._build_offline(self.cache, self.plan_id)
                except SamplePlanError as exc:
                    if cause is None:
                        raise
                    if isinstance(exc, CacheError):
                        raise CacheError(f"{cause}; and no offline fallback: {exc}") from cause
                    raise exc from cause
            return self._offline


def fill_cache(api: SamplePlanClient, cache: PlanCache, plan: Plan, *, codes: bool = False) -> None:
    """Cache ``plan`` for the offline fallback, unless it is cached already.

    Its weights and dataset, and the dataset's class codes (with a label-set dataset's
    offsets) when drawing it needs them or ``codes`` asks for them. With ``codes``, an
    entry written without them (by a sampler that did not need them) or damaged is
    written again.
    """
    if plan.is_mixture:
        fill_mixture_cache(api, cache, plan)
        return
    if cache.has(plan.id):
        if not codes:
            return
        try:
            if cache.load(plan.id).codes is not None:
                return
        except CacheError:
            pass  # damaged: written again below
    assert plan.dataset_id is not None
    try:
        weights = api.weights(plan.id)
        # A hierarchical table depends on the population's classes, not only on its
        # weights (NOTE [Offline streams] in client/_offline.py).
        # So do a schedule's weights (a function of the class counts) and a stratified
        # split's population.
        dataset = api.get_dataset(plan.dataset_id)
        class_codes = offsets = None
        if codes or needs_labels(plan):
            class_codes = api.codes(plan.dataset_id)
            offsets = api.offsets(plan.dataset_id) if dataset.multi_label else None
    except ClientRequestError as exc:
        # The service refuses to send them (more values than its page limit): the
        # sampler works, only without an offline fallback.
        logger.warning("sampleplan: plan %s is not cached for offline use: %s", plan.id, exc)
        return
    cache.store(plan, dataset, weights, class_codes, offsets)


def fill_mixture_cache(api: SamplePlanClient, cache: PlanCache, plan: Plan) -> None:
    """Cache a mixture plan for the offline fallback, unless it is cached already.

    Its answer (config, the sources' lengths), its sources' token lengths when it mixes
    tokens, and every plan source's own entry with its dataset's class codes (what
    drawing a plan offline may need).
    """
    assert plan.sources is not None
    if cache.has(plan.id):
        return
    try:
        for row in plan.sources:
            if row.plan_id is not None:
                fill_cache(api, cache, api.get_plan(row.plan_id), codes=True)
                if not cache.has(row.plan_id):
                    return  # the source plan could not be cached: neither can the mixture
        tokens: list[Any] = [None] * len(plan.sources)
        if plan.config["mixing"].get("unit") == "tokens":
            tokens = [
                None if row.dataset_id is None else api.lengths(row.dataset_id)
                for row in plan.sources
            ]
    except ClientRequestError as exc:
        logger.warning("sampleplan: plan %s is not cached for offline use: %s", plan.id, exc)
        return
    cache.store_mixture(plan, tokens)


class EpochPages(Generic[DrawerT]):
    """One iteration's pages: from the service until it cannot be reached, then offline.

    ``pages(online, offline)`` returns ``online(api)``; once the service is unreachable
    or failing (and the fallback on), it warns once and returns ``offline(drawer)``, for
    this page and every later one of the iteration. Without a client, every page is
    drawn offline.
    """

    def __init__(self, source: PlanSource[DrawerT], epoch: int) -> None:
        self.source = source
        self.epoch = epoch
        self.online = source.api is not None

    def __call__(
        self, online: Callable[[SamplePlanClient], T], offline: Callable[[DrawerT], T]
    ) -> T:
        source = self.source
        if self.online:
            assert source.api is not None
            try:
                return online(source.api)
            except (TransportError, ServerError) as exc:
                # Only an unreachable or failing service is a reason to go offline: a 4xx
                # means the request is wrong, on any replica and offline alike.
                if not source.fallback:
                    raise
                drawer = source.offline(exc)
                self.online = False
                logger.warning(
                    "sampleplan: %s; drawing the rest of epoch %d of plan %s from the local cache",
                    exc,
                    self.epoch,
                    source.plan_id,
                )
                return offline(drawer)
        return offline(source.offline(None))
