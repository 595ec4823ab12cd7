"""The client's exception tree.

Every error the client raises derives from :class:`SamplePlanError`::

    SamplePlanError
     ├── TransportError          the service could not be reached or did not answer
     │    └── TimeoutError       ... within the configured timeout
     ├── APIError                the service answered with an error (problem+json)
     │    ├── BadRequestError    4xx: the request was wrong; retrying will not help
     │    │    └── NotFoundError 404: no such dataset or plan
     │    └── ServerError        5xx (and 429) after every retry
     └── StreamMismatchError     a stream cannot be reproduced here (torch version, CPU)
"""

from __future__ import annotations

from typing import Any


class SamplePlanError(Exception):
    """Base of every error raised by :mod:`client`."""


class TransportError(SamplePlanError):
    """The service could not be reached, or the connection failed mid-request."""


class TimeoutError(TransportError):  # noqa: A001 - mirrors httpx.TimeoutException's place
    """The service did not answer within the configured timeout."""


class APIError(SamplePlanError):
    """The service answered with an error status; ``problem`` is its RFC 9457 body."""

    def __init__(self, status_code: int, problem: dict[str, Any]) -> None:
        self.status_code = status_code
        self.problem = problem
        self.detail: str = str(problem.get("detail", "")) or f"HTTP {status_code}"
        self.title: str = str(problem.get("title", ""))
        super().__init__(f"{status_code} {self.title}: {self.detail}" if self.title else self.detail)


class BadRequestError(APIError):
    """A 4xx answer: the request itself was wrong, so it is not retried."""


class NotFoundError(BadRequestError):
    """404: the dataset or plan does not exist on this service."""


class ServerError(APIError):
    """A 5xx or 429 answer that persisted through every retry."""


class StreamMismatchError(SamplePlanError):
    """The local environment cannot reproduce a plan's stream bit for bit."""
