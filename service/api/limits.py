"""Request limits as pure ASGI middlewares: body size and time to first response byte.

They are plain ASGI (not Starlette's ``BaseHTTPMiddleware``) so that streamed request
and response bodies pass through untouched, chunk by chunk.

NOTE [Why the timeout stops at the response start]
    A request is timed until its response starts, not until its last byte: a large
    array streamed to a slow client is not a stuck request, and cancelling a response
    half-sent would leave the client a truncated body with a 200 status. What needs a
    bound is the work before the answer (reading the body, preparing a plan, drawing an
    epoch). When it runs out, the client gets a 504 at once; work already handed to a
    worker thread cannot be interrupted from outside, so the deadline is also set for
    the request's context (NOTE [Deadlines] in ``core/deadlines.py``): long work checks
    it and stops, and whatever answer still comes late is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import math

import anyio
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sampleplan.core.deadlines import deadline
from sampleplan.core.errors import DeadlineExceeded
from sampleplan.service.api.problems import problem_response
from sampleplan.service.errors import (
    PayloadTooLarge,
    RequestTimeout,
    SamplePlanServiceError,
    UnsupportedMediaType,
)

logger = logging.getLogger("sampleplan")


class _BodyTooLarge(Exception):
    """Raised from ``receive`` to stop an app reading a body past the limit."""


async def _send_problem(
    scope: Scope,
    receive: Receive,
    send: Send,
    error: SamplePlanServiceError,
    headers: dict[str, str],
) -> None:
    response = problem_response(
        Request(scope), error.status, error.title, error.detail, error.type_slug, headers=headers
    )
    await response(scope, receive, send)


def _declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:  # the server has refused such a request already; be safe anyway
        return None


def _content_encoding(scope: Scope) -> str | None:
    """A request body's ``Content-Encoding`` other than ``identity``, if any."""
    for name, value in scope.get("headers", ()):
        if name == b"content-encoding":
            encoding: str = value.decode("latin-1").strip()
            if encoding.lower() not in ("", "identity"):
                return encoding
    return None


def _is_chunked(scope: Scope) -> bool:
    return any(name == b"transfer-encoding" for name, _ in scope.get("headers", ()))


class BodySizeLimitMiddleware:
    """Answers 413 to bodies larger than ``max_body_bytes``, without reading them whole,
    and 415 to a compressed body (``Content-Encoding``): no body is ever decoded, so the
    limit bounds what is read.

    A declared ``Content-Length`` over the limit is refused before any byte is read; a
    chunked body is counted as it streams in and refused at the chunk that crosses it.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _error(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is larger than this service takes: at most {self.max_body_bytes} "
            "bytes (SAMPLEPLAN_MAX_BODY_BYTES)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        # The unread body stays on the connection, so it must not be reused.
        close = {"Connection": "close"}
        encoding = _content_encoding(scope)
        if encoding is not None:
            error = UnsupportedMediaType(
                f"request bodies are read as sent, never decoded: Content-Encoding "
                f"{encoding!r:.40} is not taken; send the body uncompressed (Parquet and Arrow "
                "files may compress their own columns, within the body limit decoded)"
            )
            await _send_problem(scope, receive, send, error, close)
            return
        if declared is not None and declared > self.max_body_bytes:
            await _send_problem(scope, receive, send, self._error(), close)
            return
        if declared is not None or not _is_chunked(scope):
            # The server reads no more than a declared length, and a request with neither
            # header has no body: only a chunked body needs counting as it arrives.
            await self.app(scope, receive, send)
            return

        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to a body it could not read; the 413 replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # Frameworks wrap what ``receive`` raised (FastAPI turns it into a 400); only
            # an error that is not the overflow's own is a real failure.
            if not exceeded:
                raise
        if exceeded and not started:
            await _send_problem(scope, receive, send, self._error(), close)


class RequestTimeoutMiddleware:
    """Answers 504 when a response has not started within ``timeout_seconds``.

    See NOTE [Why the timeout stops at the response start]. The app runs in the request's
    own task under a cancel scope with a deadline, and a timer sends the 504 from a task
    of its own: a handler waiting on a worker thread cannot be cancelled until the thread
    returns, but its client need not wait for that. (A task group per request, started
    to watch the app from beside it, cost a tenth of a cached page's time.)
    """

    def __init__(self, app: ASGIApp, timeout_seconds: float) -> None:
        self.app = app
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        late: asyncio.Task[None] | None = None

        async def watched_send(message: Message) -> None:
            nonlocal started
            if late is not None:
                return  # a late answer: the client has its 504 already
            if message["type"] == "http.response.start":
                started = True
                cancel.deadline = math.inf  # the body may take as long as it takes
            await send(message)

        loop = asyncio.get_running_loop()

        def expire() -> None:
            nonlocal late
            if not started:
                late = loop.create_task(self._answer_504(scope, receive, send))

        timer = loop.call_later(self.timeout_seconds, expire)
        error: Exception | None = None
        try:
            with (
                anyio.CancelScope(deadline=anyio.current_time() + self.timeout_seconds) as cancel,
                deadline(self.timeout_seconds),
            ):
                await self.app(scope, receive, watched_send)
        except Exception as exc:
            error = exc
        finally:
            timer.cancel()
        if late is None and cancel.cancelled_caught and not started:
            # The deadline cancelled the app before the timer ran: answer here.
            late = loop.create_task(self._answer_504(scope, receive, send))
        if late is not None:
            await late
            if error is not None and not isinstance(error, DeadlineExceeded):
                logger.warning("a request failed after its timeout", exc_info=error)
        elif error is not None:
            raise error

    async def _answer_504(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = (
            f"no response within this service's {self.timeout_seconds:g} s request timeout "
            "(SAMPLEPLAN_REQUEST_TIMEOUT_SECONDS)"
        )
        await _send_problem(scope, receive, send, RequestTimeout(detail), {})
