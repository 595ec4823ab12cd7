"""The client's exception tree.

Every error the client raises derives from :class:`SamplePlanError`::

    SamplePlanError
     ├── TransportError              the service could not be reached or did not answer
     │    └── TimeoutException       ... within the configured timeout
     ├── APIError                    the service answered with an error (problem+json)
     │    ├── ClientRequestError     4xx but 429: the service refused the request as it
     │    │    │                     stands (invalid, unauthorised, conflicting, too
     │    │    │                     large); retrying it unchanged will not help
     │    │    └── NotFoundError     404: no such dataset, plan or run
     │    └── ServerError            5xx (and 429) after every retry
     ├── StreamMismatchError         a stream cannot be reproduced here (torch version, CPU,
     │                               algorithm), so the offline fallback refuses
     └── CacheError                  the local plan cache lacks a plan or holds a damaged one

Connection errors, timeouts, 5xx and 429 are retried first (see ``sampleplan.client._retry``);
what is raised is what persisted through the last attempt.

No name shadows a builtin (httpx says ``TimeoutException`` for that reason). The names of
the previous release are kept for one more as deprecated aliases of the same classes;
reading one warns (:class:`DeprecationWarning`):

- ``TimeoutError`` is :class:`TimeoutException` (it shadowed the builtin ``TimeoutError``);
- ``BadRequestError`` is :class:`ClientRequestError` (it was raised for every 4xx but
  429, not only for 400 Bad Request).
"""

from __future__ import annotations

import warnings
from typing import Any


class SamplePlanError(Exception):
    """Base of every error raised by :mod:`client`."""


class TransportError(SamplePlanError):
    """The service could not be reached, or the connection failed mid-request."""


class TimeoutException(TransportError):
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


class ClientRequestError(APIError):
    """A 4xx answer other than 429: the service refused the request as it stands.

    The request was invalid (400, 422), unauthorised (401, 403), in conflict with what
    the service holds (409), too large (413) or of a media type it does not take (406,
    415): sending it again unchanged would be refused again, so it is not retried.
    """


class NotFoundError(ClientRequestError):
    """404: the dataset, plan or run does not exist on this service."""


class ServerError(APIError):
    """A 5xx or 429 answer that persisted through every retry."""


class StreamMismatchError(SamplePlanError):
    """The local environment cannot reproduce a plan's stream bit for bit."""


class CacheError(SamplePlanError):
    """The offline fallback needs a cached plan that is missing or damaged."""


#: The previous release's names, kept as aliases for one more (see the module docstring).
DEPRECATED_ALIASES: dict[str, type[SamplePlanError]] = {
    "TimeoutError": TimeoutException,
    "BadRequestError": ClientRequestError,
}


def deprecated_alias(name: str) -> type[SamplePlanError]:
    """The class a deprecated name stands for, with a :class:`DeprecationWarning`."""
    new = DEPRECATED_ALIASES[name]
    warnings.warn(
        f"sampleplan.client.{name} is deprecated and will be removed in the next release; "
        f"use sampleplan.client.{new.__name__}, the same class",
        DeprecationWarning,
        stacklevel=3,
    )
    return new


def __getattr__(name: str) -> Any:
    if name in DEPRECATED_ALIASES:
        return deprecated_alias(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
