"""sampleplan client: talk to the service and draw from its plans in a ``DataLoader``.

>>> from sampleplan.client import SamplePlanClient, RemoteWeightedSampler
>>> api = SamplePlanClient("http://127.0.0.1:8000")            # doctest: +SKIP
>>> plan = api.create_plan(labels=[0, 0, 0, 1], seed=0)       # doctest: +SKIP
>>> loader = DataLoader(data, sampler=RemoteWeightedSampler(plan.id, api))  # doctest: +SKIP

Batch plans (``batching=...``) go to ``DataLoader(data, batch_sampler=RemoteBatchSampler(...))``.

Everything public is re-exported here; the modules behind it are private.

Deprecated aliases, kept for one release (reading one warns): ``TimeoutError`` for
:class:`TimeoutException` and ``BadRequestError`` for :class:`ClientRequestError`.
"""

from typing import Any as _Any

from sampleplan.client import _exceptions
from sampleplan.client._batch_sampler import RemoteBatchSampler
from sampleplan.client._cache import PlanCache, default_cache_dir
from sampleplan.client._client import AsyncSamplePlanClient, SamplePlanClient
from sampleplan.client._exceptions import (
    APIError,
    CacheError,
    ClientRequestError,
    NotFoundError,
    SamplePlanError,
    ServerError,
    StreamMismatchError,
    TimeoutException,
    TransportError,
)
from sampleplan.client._folders import ImageFolderTargets, image_folder_targets
from sampleplan.client._models import ClassPage, ClassRow, Dataset, Plan, Run, SourceRow
from sampleplan.client._retry import RetryPolicy
from sampleplan.client._sampler import RemoteWeightedSampler

__all__ = [
    "APIError",
    "AsyncSamplePlanClient",
    "CacheError",
    "ClassPage",
    "ClassRow",
    "ClientRequestError",
    "Dataset",
    "ImageFolderTargets",
    "NotFoundError",
    "Plan",
    "PlanCache",
    "RemoteBatchSampler",
    "RemoteWeightedSampler",
    "RetryPolicy",
    "Run",
    "SamplePlanClient",
    "SamplePlanError",
    "ServerError",
    "SourceRow",
    "StreamMismatchError",
    "TimeoutException",
    "TransportError",
    "default_cache_dir",
    "image_folder_targets",
]


def __getattr__(name: str) -> _Any:
    # The deprecated aliases, read through here only, so that reading one warns.
    if name in _exceptions.DEPRECATED_ALIASES:
        return _exceptions.deprecated_alias(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
