"""Small JSON run updates answered at the floor, before FastAPI's layers.

NOTE [Updates at the floor]
    Small run updates (``POST /v1/runs/{run_id}/updates``, a JSON body of a few indices)
    arrive by the hundreds per second from the ranks of a training job. Their storage is
    cheap per update (NOTE [Group commit] in ``run_catalog.py``): what bounded a replica
    under 32 clients was its CPU per request, the most of it the layers every request
    crosses (FastAPI's 500 guard, exception and body limit layers; the access log, token
    check, body limit and timeout middlewares; the routing past every route in turn; the
    dependency solving; the response model's validation and serialization), on the event
    loop that every other request waits for.

    :class:`UpdateLane` stands on the floor (NOTE [Serving at the floor] in ``floor.py``)
    for ``POST`` requests, and decides from the path and headers alone, before a byte of
    the body is read: the route's path with a valid run id and no query, one
    ``Content-Type`` of ``application/json``, one ``Content-Length`` within the body limit,
    no ``Transfer-Encoding`` or ``Content-Encoding``, a valid bearer token when tokens are
    configured. Anything else goes down the whole app untouched (its 401, 413, 415, 422 or
    the route's own answer, as before).

    What it takes, it handles as the route handles it, under the request timeout (the
    timeout middleware's own code: the same deadline in the request's context, the same
    504), from the reading of the body on: the body read as the route reads it, parsed by
    the route's own parser (on the event loop up to :data:`LANE_BODY_BYTES`, a few
    microseconds where a worker thread's round trip costs more; in the worker thread
    beyond), then checked, queued and committed by :meth:`RunCatalog.add_update_async`.
    A refused update (400, 404, 409, 422, 503) is answered by the app's own exception
    handler, an unexpected failure as FastAPI's 500 guard answers it. The ``202`` is the
    run as the response model writes it, with the route's headers in their order, and
    ``X-Request-ID`` last; the request is recorded as the access log middleware records
    it (requests in flight, the count, the time and the access line under the route's
    template). ``create_app(fast_lane=False)`` leaves it out with the rest of the floor;
    tests compare the two byte for byte.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sampleplan.core.runs import RUN_ID_PATTERN
from sampleplan.service.api.auth import bearer_token_of, token_matches
from sampleplan.service.api.limits import RequestTimeoutMiddleware
from sampleplan.service.api.observability import RequestRecorder, request_id_of
from sampleplan.service.api.routes.runs import run_out, update_from_body
from sampleplan.service.api.schemas import RunOut
from sampleplan.service.logs import request_id_var

if TYPE_CHECKING:
    from sampleplan.service.run_catalog import RunCatalog

__all__ = ["LANE_BODY_BYTES", "UpdateLane"]

#: The largest body the lane parses on the event loop; larger ones are parsed in the
#: worker thread that checks and queues the update, as the route parses them.
LANE_BODY_BYTES = 16 * 1024

_RUN_ID = re.compile(RUN_ID_PATTERN)

#: Headers the lane leaves to the stack whatever their value.
_STACK_HEADERS = frozenset({b"transfer-encoding", b"content-encoding"})

#: The media type the lane takes, and the one its answers carry (the route's).
_JSON = b"application/json"

_Handler = Callable[[Request, Exception], Awaitable[Response]]


class UpdateLane:
    """Answers small JSON updates of ``route`` before the app; see NOTE [Updates at the
    floor]. Everything else goes to ``app`` untouched."""

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
        self.max_body_bytes = max_body_bytes
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
        run_id, caller_id = read
        request_id = request_id_of(caller_id)
        request_id_var.set(request_id)
        await self._answer(scope, receive, send, runs, run_id, request_id, started)

    def _read_headers(self, scope: Scope) -> tuple[str, bytes | None] | None:
        """The run id and the caller's request id, when the path and headers are the
        lane's to answer (NOTE [Updates at the floor])."""
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
        if int(content_length) > self.max_body_bytes:
            return None  # the body limit's 413
        if self.tokens:
            token = None if authorization is None else bearer_token_of(authorization)
            if token is None or not token_matches(token, self.tokens):
                return None  # the token check refuses it
        return run_id, caller_id

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        runs: RunCatalog,
        run_id: str,
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
                body = await Request(scope, receive).body()
                if len(body) <= LANE_BODY_BYTES:
                    # A few kilobytes: parsed here in microseconds, less than a thread's
                    # round trip; larger ones in the worker thread, as the route parses
                    # them.
                    update, update_id = update_from_body(body, "application/json", {})
                    info = await runs.add_parsed_update_async(run_id, update, update_id)
                else:
                    info = await runs.add_update_async(
                        run_id, lambda: update_from_body(body, "application/json", {})
                    )
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
            failure: Exception | None = exc
        else:
            failure = None
        finally:
            # The access log middleware's record, whatever happened (a cancelled request
            # too, as its ``finally`` does).
            self.in_flight.dec()
            elapsed = time.perf_counter() - started
            self.recorder.record(scope, status, elapsed, request_id, self.template)
        if failure is not None:
            # What FastAPI's 500 guard does, outside the access log: the app's handler of
            # every exception answers (without the request id) unless an answer has
            # started, and the error goes on to the server.
            last = self.handlers.get(Exception) or self.handlers.get(500)
            if last is not None and not began:
                response = await last(Request(scope), failure)
                await response(scope, receive, send)
            raise failure

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
