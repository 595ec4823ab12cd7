"""The client's exception tree.

Every error the client raises derives from :class:`SamplePlanError`::

    SamplePlanError
     ├── TransportError          the service could not be reached or did not answer
     │    └── TimeoutError       ... within the configured timeout
     ├── APIError                the service answered with an error (problem+json)
     │    ├── BadRequestError    4xx: the request was wrong; retrying will not help
     │    │    └── NotFoundError 404: no such dataset or plan
     │    └── ServerError        5xx (and 429) after every retry
     ├── StreamMismatchError     a stream cannot be reproduced here (torch version, CPU,
     │                           algorithm), so the offline fallback refuses
     └── CacheError              the local plan cache lacks a plan or holds a damaged one

Connection errors, timeouts, 5xx and 429 are retried first (see ``sampleplan.client._retry``);
what is raised is what persisted through the last attempt.
"""

from __future__ import annotations

from typing import Any


class SamplePlanError(Exception):
    """Base of every error raised by :mod:`client`."""


class TransportError(SamplePlanError):
    """The service could not be reached, or the connection failed mid-request."""


class TimeoutError(TransportError):
    """The service did not answer within the configured timeout."""


class APIError(SamplePlanError):
    """The service answered with an error status; ``problem`` is its RFC 9457 body.

    ``attempts`` says how many times the request was sent (more than one when the error
    was retried).
    """

    def __init__(self, status_code: int, problem: dict[str, Any], *, attempts: int = 1) -> None:
        self.status_code = status_code
        self.problem = problem
        self.attempts = attempts
        self.detail: str = str(problem.get("detail", "")) or f"HTTP {status_code}"
        self.title: str = str(problem.get("title", ""))
        message = f"{status_code} {self.title}: {self.detail}" if self.title else self.detail
        if attempts > 1:
            message += f" (after {attempts} attempts)"
        super().__init__(message)


class BadRequestError(APIError):
    """A 4xx answer: the request itself was wrong, so it is not retried."""


class NotFoundError(BadRequestError):
    """404: the dataset or plan does not exist on this service."""


class ServerError(APIError):
    """A 5xx or 429 answer that persisted through every retry."""


class StreamMismatchError(SamplePlanError):
    """The local environment cannot reproduce a plan's stream bit for bit."""


class CacheError(SamplePlanError):
    """The offline fallback needs a cached plan that is missing or damaged."""
