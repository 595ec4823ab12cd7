"""sampleplan client: talk to the service and draw from its plans in a ``DataLoader``.

>>> from client import SamplePlanClient
>>> api = SamplePlanClient("http://127.0.0.1:8000")          # doctest: +SKIP
>>> plan = api.create_plan(labels=[0, 0, 0, 1], seed=0)     # doctest: +SKIP
>>> api.indices(plan.id, epoch=0)                           # doctest: +SKIP
"""

from client._client import SamplePlanClient
from client._exceptions import (
    APIError,
    BadRequestError,
    NotFoundError,
    SamplePlanError,
    ServerError,
    StreamMismatchError,
    TimeoutError,
    TransportError,
)
from client._models import ClassRow, Dataset, Plan

__all__ = [
    "APIError",
    "BadRequestError",
    "ClassRow",
    "Dataset",
    "NotFoundError",
    "Plan",
    "SamplePlanClient",
    "SamplePlanError",
    "ServerError",
    "StreamMismatchError",
    "TimeoutError",
    "TransportError",
]
