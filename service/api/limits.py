"""Request limits as pure ASGI middlewares: body size and time to first response byte.

They are plain ASGI (not Starlette's ``BaseHTTPMiddleware``) so that streamed request
and response bodies pass through untouched, chunk by chunk.

NOTE [Why the timeout stops at the response start]
    A request is timed until its response starts, not until its last byte: a large
    array streamed to a slow client is not a stuck request, and cancelling a response
    half-sent would leave the client a truncated body with a 200 status. What needs a
    bound is the work before the answer (reading the body, preparing a plan, drawing an
    epoch). When it runs out, the client gets a 504 at once; work already handed to a
    worker thread cannot be interrupted and finishes in the background, and its late
    answer is dropped.
"""

from __future__ import annotations

import logging

import anyio
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import problem_response
from service.errors import PayloadTooLarge, RequestTimeout, SamplePlanServiceError

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


class BodySizeLimitMiddleware:
    """Answers 413 to bodies larger than ``max_body_bytes``, without reading them whole.

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
        if declared is not None and declared > self.max_body_bytes:
            await _send_problem(scope, receive, send, self._error(), close)
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

    See NOTE [Why the timeout stops at the response start].
    """

    def __init__(self, app: ASGIApp, timeout_seconds: float) -> None:
        self.app = app
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answered = anyio.Event()
        timed_out = False
        error: Exception | None = None

        async def watched_send(message: Message) -> None:
            if timed_out:
                return  # a late answer: the client has its 504 already
            if message["type"] == "http.response.start":
                answered.set()
            await send(message)

        async def run_app() -> None:
            nonlocal error
            try:
                await self.app(scope, receive, watched_send)
            except Exception as exc:
                # Kept and re-raised below, unwrapped: a task group would wrap it in a group.
                error = exc
            finally:
                answered.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run_app)
            with anyio.move_on_after(self.timeout_seconds):
                await answered.wait()
            if not answered.is_set():
                timed_out = True
                tasks.cancel_scope.cancel()
                detail = (
                    f"no response within this service's {self.timeout_seconds:g} s request timeout "
                    "(SAMPLEPLAN_REQUEST_TIMEOUT_SECONDS)"
                )
                with anyio.CancelScope(shield=True):
                    await _send_problem(scope, receive, send, RequestTimeout(detail), {})
        if error is not None:
            if not timed_out:
                raise error
            logger.warning("a request failed after its timeout", exc_info=error)
