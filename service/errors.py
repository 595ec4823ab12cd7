"""The service's exception tree.

The sampling core raises the errors of :mod:`sampleplan.core.errors` (plain Python, no
status); the service adds its own beneath the same root, each with its HTTP status, and
:func:`http_status` gives the status of either. One handler in
``sampleplan.service.api.problems`` turns any of them into ``application/problem+json``::

    SamplingError                          (core root; 500 unless mapped)
     ├── InvalidInput                       (422)  the request is well-formed but wrong
     │    ├── InvalidLabels
     │    ├── InvalidWeights
     │    ├── InvalidSplit
     │    ├── InvalidPlanConfig
     │    ├── InvalidStreamRequest
     │    └── InvalidRunUpdate
     ├── UnsupportedEncoding                (415)
     ├── InputTooLarge                      (413)
     └── SamplePlanServiceError             (500)  raised by the service only
          ├── MalformedRequest              (400)  the body cannot be parsed at all
          ├── UnsupportedMediaType          (415)
          ├── NotAcceptable                 (406)
          ├── PayloadTooLarge               (413)
          ├── Unauthorized                  (401)
          ├── NotFound                      (404)
          │    ├── DatasetNotFound
          │    ├── PlanNotFound
          │    └── RunNotFound
          ├── NotForMixtures                (422)  a route a mixture plan has no answer for
          ├── Conflict                      (409)  the request contradicts what is stored
          │    ├── RunPlanConflict
          │    └── EpochFrozen
          ├── StorageUnavailable            (503)
          └── RequestTimeout                (504)  no response within the request timeout
"""

from __future__ import annotations

from sampleplan.core.errors import (
    DeadlineExceeded,
    InputTooLarge,
    InvalidInput,
    InvalidLabels,
    InvalidPlanConfig,
    InvalidRunUpdate,
    InvalidSplit,
    InvalidStreamRequest,
    InvalidWeights,
    SamplingError,
    UnsupportedEncoding,
)

__all__ = [
    "Conflict",
    "DatasetNotFound",
    "DeadlineExceeded",
    "EpochFrozen",
    "EpochNotReached",
    "EpochPruned",
    "InputTooLarge",
    "InvalidInput",
    "InvalidLabels",
    "InvalidPlanConfig",
    "InvalidRunUpdate",
    "InvalidSplit",
    "InvalidStreamRequest",
    "InvalidWeights",
    "MalformedRequest",
    "NotAcceptable",
    "NotForMixtures",
    "NotFound",
    "PayloadTooLarge",
    "PlanNotFound",
    "RequestTimeout",
    "RunNotFound",
    "RunPlanConflict",
    "SamplePlanServiceError",
    "SamplingError",
    "StorageUnavailable",
    "Unauthorized",
    "UnsupportedEncoding",
    "UnsupportedMediaType",
    "UpdateIdConflict",
    "http_status",
]

#: The HTTP status of each kind of error the core raises.
_CORE_STATUS: dict[type[SamplingError], int] = {
    InvalidInput: 422,
    UnsupportedEncoding: 415,
    InputTooLarge: 413,
    DeadlineExceeded: 504,
}


def http_status(error: SamplingError | type[SamplingError]) -> int:
    """The HTTP status that answers ``error`` (an instance or a class)."""
    cls = error if isinstance(error, type) else type(error)
    for base in cls.__mro__:
        if base in _CORE_STATUS:
            return _CORE_STATUS[base]
        status = base.__dict__.get("status")
        if isinstance(status, int):
            return status
    return 500


class SamplePlanServiceError(SamplingError):
    """Base of the errors only the service raises; ``status`` is the HTTP status."""

    status: int = 500


class MalformedRequest(SamplePlanServiceError):
    status = 400
    title = "Malformed request"
    type_slug = "malformed-request"


class UnsupportedMediaType(SamplePlanServiceError):
    status = 415
    title = "Unsupported media type"
    type_slug = "unsupported-media-type"


class NotAcceptable(SamplePlanServiceError):
    status = 406
    title = "Not acceptable"
    type_slug = "not-acceptable"


class PayloadTooLarge(SamplePlanServiceError):
    status = 413
    title = "Payload too large"
    type_slug = "payload-too-large"


class Unauthorized(SamplePlanServiceError):
    status = 401
    title = "Unauthorized"
    type_slug = "unauthorized"


class NotFound(SamplePlanServiceError):
    status = 404
    title = "Not found"
    type_slug = "not-found"


class DatasetNotFound(NotFound):
    title = "Dataset not found"
    type_slug = "dataset-not-found"


class PlanNotFound(NotFound):
    title = "Plan not found"
    type_slug = "plan-not-found"


class RunNotFound(NotFound):
    title = "Run not found"
    type_slug = "run-not-found"


class NotForMixtures(SamplePlanServiceError):
    """A plan route that only single-dataset plans answer (weights, classes, batches,
    runs), asked of a mixture plan."""

    status = 422
    title = "Not served for a mixture plan"
    type_slug = "not-for-mixtures"


class Conflict(SamplePlanServiceError):
    status = 409
    title = "Conflict"
    type_slug = "conflict"


class RunPlanConflict(Conflict):
    title = "Run exists for another plan"
    type_slug = "run-plan-conflict"


class EpochFrozen(Conflict):
    title = "Epoch frozen"
    type_slug = "epoch-frozen"


class EpochPruned(SamplePlanServiceError):
    status = 410
    title = "Epoch no longer kept"
    type_slug = "epoch-pruned"


class EpochNotReached(Conflict):
    title = "Epoch not reached"
    type_slug = "epoch-not-reached"


class UpdateIdConflict(Conflict):
    title = "Update id used for another update"
    type_slug = "update-id-conflict"


class StorageUnavailable(SamplePlanServiceError):
    status = 503
    title = "Storage unavailable"
    type_slug = "storage-unavailable"


class RequestTimeout(SamplePlanServiceError):
    status = 504
    title = "Request timeout"
    type_slug = "request-timeout"
