"""The service's exception tree.

Every error the service means to report derives from :class:`SamplePlanServiceError`,
which carries its HTTP status and a problem type slug. One handler in
``service.api.problems`` turns any of them into ``application/problem+json``; the
sampling core raises them too, because they are plain Python (no web framework)::

    SamplePlanServiceError                 (500)
     ├── InvalidInput                       (422)  the request is well-formed but wrong
     │    ├── InvalidLabels
     │    ├── InvalidWeights
     │    ├── InvalidSplit
     │    ├── InvalidPlanConfig
     │    ├── InvalidStreamRequest
     │    └── InvalidRunUpdate
     ├── MalformedRequest                   (400)  the body cannot be parsed at all
     ├── UnsupportedMediaType               (415)
     ├── NotAcceptable                      (406)
     ├── PayloadTooLarge                    (413)
     ├── Unauthorized                       (401)
     ├── NotFound                           (404)
     │    ├── DatasetNotFound
     │    ├── PlanNotFound
     │    └── RunNotFound
     ├── Conflict                           (409)  the request contradicts what is stored
     │    ├── RunPlanConflict
     │    └── EpochFrozen
     ├── StorageUnavailable                 (503)
     └── RequestTimeout                     (504)  no response within the request timeout
"""

from __future__ import annotations


class SamplePlanServiceError(Exception):
    """Base of every error the service reports; ``status`` is the HTTP status."""

    status: int = 500
    title: str = "Internal error"
    type_slug: str = "internal-error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(SamplePlanServiceError):
    status = 422
    title = "Invalid input"
    type_slug = "invalid-input"


class InvalidLabels(InvalidInput):
    title = "Invalid labels"
    type_slug = "invalid-labels"


class InvalidWeights(InvalidInput):
    title = "Invalid weights"
    type_slug = "invalid-weights"


class InvalidSplit(InvalidInput):
    title = "Invalid split"
    type_slug = "invalid-split"


class InvalidPlanConfig(InvalidInput):
    title = "Invalid plan configuration"
    type_slug = "invalid-plan-config"


class InvalidStreamRequest(InvalidInput):
    title = "Invalid stream request"
    type_slug = "invalid-stream-request"


class InvalidRunUpdate(InvalidInput):
    title = "Invalid run update"
    type_slug = "invalid-run-update"


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


class StorageUnavailable(SamplePlanServiceError):
    status = 503
    title = "Storage unavailable"
    type_slug = "storage-unavailable"


class RequestTimeout(SamplePlanServiceError):
    status = 504
    title = "Request timeout"
    type_slug = "request-timeout"
