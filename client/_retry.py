"""When to try a request again, how long to wait, and which error to raise when not.

:class:`RetryPolicy` makes every decision and performs no I/O, so the sync and the async
client share it and differ only in how they sleep.

NOTE [What is retried]
    Connection errors and timeouts, 5xx and 429 answers are retried; 4xx answers are not
    (the request itself is wrong). POSTs are retried too: creating a dataset or a plan is
    idempotent, because both are named by the hash of their content, and a run update
    carries an ``update_id`` made once per call, which every attempt resends: the
    service stores an id once (the same id with another payload is a 409), so an update
    whose 503 or lost answer hid a commit is applied once, and one that did not commit
    is applied by the retry.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass

import httpx

from sampleplan.client._exceptions import (
    APIError,
    ClientRequestError,
    NotFoundError,
    ServerError,
    TimeoutException,
    TransportError,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def error_from_response(response: httpx.Response, *, attempts: int = 1) -> APIError:
    """The :class:`APIError` subclass for an error response (problem+json or not)."""
    try:
        problem = response.json()
        if not isinstance(problem, dict):
            raise ValueError("not a problem object")
    except ValueError:
        problem = {"title": response.reason_phrase, "detail": response.text[:500]}
    status = response.status_code
    if status == 404:
        return NotFoundError(status, problem, attempts=attempts)
    if 400 <= status < 500 and status != 429:
        return ClientRequestError(status, problem, attempts=attempts)
    return ServerError(status, problem, attempts=attempts)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or ``None`` without one."""
    header = response.headers.get("retry-after")
    if header is None:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a ``Retry-After`` header wins when present.

    Attempt ``k`` (from 0) that fails waits ``uniform(0, min(max_backoff, backoff * 2**k))``
    seconds, or what ``Retry-After`` says, at most ``max_retry_after``. After ``retries``
    further attempts the failure is raised as a :class:`~client.SamplePlanError`.
    """

    retries: int = 3
    backoff: float = 0.25
    max_backoff: float = 30.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise ValueError(
                f"retries should be a non-negative integer, but got retries={self.retries!r}"
            )
        if not (math.isfinite(self.backoff) and self.backoff >= 0):
            raise ValueError(
                f"backoff should be a non-negative number of seconds, "
                f"but got backoff={self.backoff!r}"
            )

    @property
    def attempts(self) -> int:
        """How many times a request is sent at most."""
        return self.retries + 1

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (counted from 0)."""
        if response is not None:
            retry_after = retry_after_seconds(response)
            if retry_after is not None:
                return min(retry_after, self.max_retry_after)
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))

    def after_response(self, attempt: int, response: httpx.Response) -> float | None:
        """``None`` if ``response`` is the answer, else the wait before the next attempt.

        Raises the :class:`~client.APIError` for an error that is not retried or that
        persisted through the last attempt.
        """
        if response.status_code < 400:
            return None
        if response.status_code in RETRY_STATUSES and attempt < self.retries:
            return self.delay(attempt, response)
        raise error_from_response(response, attempts=attempt + 1)

    def after_error(self, attempt: int, exc: httpx.HTTPError, what: str, base_url: str) -> float:
        """The wait before the next attempt after ``exc``; raises after the last attempt."""
        retryable = isinstance(exc, httpx.TransportError) and not isinstance(
            exc, httpx.UnsupportedProtocol
        )
        if retryable and attempt < self.retries:
            return self.delay(attempt)
        tries = f"after {attempt + 1} attempt{'s' if attempt else ''}"
        if isinstance(exc, httpx.TimeoutException):
            raise TimeoutException(
                f"{what}: {base_url} did not answer in time, {tries} ({exc!r})"
            ) from exc
        raise TransportError(f"{what}: cannot reach {base_url}, {tries} ({exc!r})") from exc
