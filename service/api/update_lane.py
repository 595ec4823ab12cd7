"""Small JSON run updates answered at the floor, before FastAPI's layers.

NOTE [Updates at the floor]
    Small run updates (``POST /v1/runs/{run_id}/updates`` with a JSON body of a few
    indices) arrive by the hundreds per second from every rank of a training job. Their
    storage is cheap per update (NOTE [Group commit] in ``run_catalog.py``); what bounded
    a replica was the CPU each request spent crossing the app: profiled under 32 clients,
    the layers every request crosses (FastAPI's 500 guard, its exception and body limit
    layers, the access log, token check, body limit and timeout middlewares, the routing
    of the request past every route in turn, the dependency solving, the response model's
    validation) took most of the event loop's share of an update's time, the update's
    parsing and queueing in its worker thread far less.

    :class:`UpdateLane` stands on the floor (NOTE [Serving at the floor] in ``floor.py``)
    for ``POST`` requests. It decides from the headers first, while the request is still
    untouched: the route's path with a valid run id and no query, ``Content-Type:
    application/json``, a ``Content-Length`` of at most :data:`LANE_BODY_BYTES` (and the
    service's body limit), no ``Transfer-Encoding`` or ``Content-Encoding``, a valid bearer
    token when tokens are configured. Then it reads the body and parses it on the event
    loop (a few kilobytes at most: a few microseconds, where a worker thread's round trip
    cost more), exactly as the route parses it. Anything else, a body that is not what
    was declared, a client gone while it sends, or a body the route's parsing refuses,
    goes down the whole app, the body read so far replayed to it, and the route answers
    it as before (its 400, 413, 415 or 422).

    A parsed update is then handled as the route handles it: under the request timeout
    (the same middleware's code, so the same deadline in the request's context and the
    same 504), :meth:`RunCatalog.add_update_async` checks and queues it in a worker thread
    and waits for the writer's commit; a refused update (404, 409, 422, 503) is answered
    by the app's own exception handler, and an unexpected failure as FastAPI's 500 guard
    answers it. The answer is sent as the stack sends it (the ``202`` with the run as the
    response model writes it, its headers in the same order, ``X-Request-ID`` last), and
    recorded as the access log middleware records it (requests in flight, the count, the
    time and the access line under the route's template). ``create_app(fast_lane=False)``
    leaves it out with the rest of the floor; tests compare the two byte for byte.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sampleplan.core.runs import RUN_ID_PATTERN, RunUpdate
from sampleplan.service.api.auth import bearer_token_of, token_matches
from sampleplan.service.api.limits import RequestTimeoutMiddleware
from sampleplan.service.api.observability import RequestRecorder, request_id_of
from sampleplan.service.api.routes.runs import run_out, update_from_body
from sampleplan.service.api.schemas import RunOut
from sampleplan.service.logs import request_id_var

if TYPE_CHECKING:
    from sampleplan.service.run_catalog import RunCatalog

__all__ = ["LANE_BODY_BYTES", "UpdateLane"]

#: The largest body the lane reads and parses on the event loop; larger ones take the
#: route's way (parsed in a worker thread).
LANE_BODY_BYTES = 16 * 1024

_RUN_ID = re.compile(RUN_ID_PATTERN)

#: Headers the lane leaves to the stack whatever their value.
_STACK_HEADERS = frozenset({b"transfer-encoding", b"content-encoding"})

#: The answer's own headers before ``X-Request-ID``, as the route's JSON response has them.
_JSON = b"application/json"

_Handler = Callable[[Request, Exception], Awaitable[Response]]


class _FallThrough(Exception):
    """Not the lane's to answer: the request goes down the whole app."""


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` with ``messages`` (read already) given back first."""
    pending = deque(messages)

    async def replay() -> Message:
        if pending:
            return pending.popleft()
        return await receive()

    return replay


class UpdateLane:
    """Answers small JSON updates of ``route`` before the app; see NOTE [Updates at the
    floor]. Everything else goes to ``app`` untouched (or with its body replayed)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        route: APIRoute,
        recorder: RequestRecorder,
        tokens: tuple[str, ...],
        max_body_bytes: int,
        timeout_seconds: float,
        handlers: Mapping[Any, Callable[..., Any]],
    ) -> None:
        self.app = app
        self.path_regex = route.path_regex
        self.template = route.path
        self.recorder = recorder
        self.in_flight = recorder.metrics.requests_in_flight
        self.tokens = tokens
        self.limit = min(max_body_bytes, LANE_BODY_BYTES)
        self.timeout_seconds = timeout_seconds
        #: The app's exception handlers (its own, by class), as FastAPI's layers find them.
        self.handlers = handlers
        #: The app's run catalog while the app runs (its lifespan sets it); ``None`` before.
        self.runs: RunCatalog | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            read = self._read_headers(scope)
        except Exception:
            read = None  # the stack meets the same headers, and answers them
        runs = self.runs
        if read is None or runs is None:
            await self.app(scope, receive, send)
            return
        run_id, length, caller_id = read
        messages: list[Message] = []
        try:
            body = await self._read_body(receive, messages, length)
            update = update_from_body(body, "application/json", {})
        except Exception:
            # Not well-formed (or not what the headers said): the route reads it again,
            # and answers it as before.
            await self.app(scope, _replaying(messages, receive), send)
            return
        request_id = request_id_of(caller_id)
        request_id_var.set(request_id)
        await self._answer(scope, receive, send, runs, run_id, update, request_id, started)

    def _read_headers(self, scope: Scope) -> tuple[str, int, bytes | None] | None:
        """The run id, the body's declared length and the caller's request id, when the
        headers and path are the lane's to answer (NOTE [Updates at the floor])."""
        if scope["query_string"]:
            return None
        match = self.path_regex.match(scope["path"])
        if match is None:
            return None
        run_id: str = match.group(1)
        if not _RUN_ID.fullmatch(run_id):
            return None
        content_type = content_length = authorization = caller_id = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                if content_type is not None:
                    return None
                content_type = value
            elif name == b"content-length":
                if content_length is not None:
                    return None
                content_length = value
            elif name == b"authorization":
                authorization = value if authorization is None else authorization
            elif name == b"x-request-id":
                caller_id = value if caller_id is None else caller_id
            elif name in _STACK_HEADERS:
                return None
        if content_type is None or content_type.split(b";", 1)[0].strip().lower() != _JSON:
            return None
        if content_length is None or not content_length.isdigit() or len(content_length) > 9:
            return None
        length = int(content_length)
        if not 0 < length <= self.limit:
            return None
        if self.tokens:
            token = None if authorization is None else bearer_token_of(authorization)
            if token is None or not token_matches(token, self.tokens):
                return None  # the token check refuses it
        return run_id, length, caller_id

    @staticmethod
    async def _read_body(receive: Receive, messages: list[Message], length: int) -> bytes:
        """The body, of exactly ``length`` bytes; each message read is kept in ``messages``
        (given back to the stack when the lane does not answer)."""
        chunks = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                raise _FallThrough  # the client has gone: the stack meets it too
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > length:
                raise _FallThrough
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if size != length:
            raise _FallThrough
        return b"".join(chunks)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        runs: RunCatalog,
        run_id: str,
        update: tuple[RunUpdate, str | None],
        request_id: str,
        started: float,
    ) -> None:
        """Handle the update as the route does, under the request timeout; send and record
        the answer as the access log middleware does."""
        status = 500
        began = False
        header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            nonlocal status, began
            if message["type"] == "http.response.start":
                status, began = int(message["status"]), True
                message["headers"] = [*message["headers"], header]
            await send(message)

        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                info = await runs.add_update_async(run_id, lambda: update)
            except Exception as exc:
                handler = self._handler(exc)
                if handler is None:
                    raise  # FastAPI's 500 guard's, below
                response = await handler(Request(scope), exc)
                await response(scope, receive, send)
                return
            body = RunOut.__pydantic_serializer__.to_json(run_out(info))
            headers = [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON)]
            await send({"type": "http.response.start", "status": 202, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        self.in_flight.inc()
        try:
            timed = RequestTimeoutMiddleware(handle, timeout_seconds=self.timeout_seconds)
            await timed(scope, receive, send_with_id)
        except Exception as exc:
            # What FastAPI's 500 guard does, outside the access log: the app's handler of
            # every exception answers (without the request id), and the error goes on to
            # the server.
            self.in_flight.dec()
            elapsed = time.perf_counter() - started
            self.recorder.record(scope, status, elapsed, request_id, self.template)
            last = self.handlers.get(Exception) or self.handlers.get(500)
            if last is not None and not began:
                response = await last(Request(scope), exc)
                await response(scope, receive, send)
            raise
        self.in_flight.dec()
        elapsed = time.perf_counter() - started
        self.recorder.record(scope, status, elapsed, request_id, self.template)

    def _handler(self, exc: Exception) -> _Handler | None:
        """The app's handler of ``exc`` as its exception layer finds it (along the
        exception's classes), leaving out the last resort, which FastAPI's 500 guard runs."""
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            handler = self.handlers.get(cls)
            if handler is not None:
                return handler
        return None
