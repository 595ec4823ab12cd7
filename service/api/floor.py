"""The floor: pages already in memory answered before the middleware stack.

NOTE [Serving at the floor]
    With the fast lane (NOTE [Fast lane] in ``fastlane.py``) a cached page cost about
    230 us of one core, of which the page itself (a slice, its JSON or bytes) was a
    tenth; a bare ASGI app on the same server answered a body of the same size in a
    fifth of the time, so pages ran at 0.14x of it. The rest went to the layers every
    request crosses: each middleware's own coroutine and ``send`` wrapper, the request
    timeout's timer, cancel scope and deadline, the body limit's header reads, labelled
    metrics looked up by their labels, and Starlette's response objects.

    :class:`Floor` stands before the whole app: :class:`FloorFirst`, the app's class, hands
    it every request before FastAPI's own layers (its 500 guard, its telemetry hook, its
    body limit: a seventh of a page's time, crossed untouched by a ``GET`` without a
    body), and it holds the app's catalog while the app runs. For a ``GET`` or ``HEAD``
    of one of its routes it reads the headers once, and answers the request itself when
    all of this holds, so that the answer is the one the stack gives:

    * no ``Content-Length``, ``Transfer-Encoding`` or ``Content-Encoding`` header (the
      body limit lets such a request through untouched);
    * a valid bearer token, when tokens are configured (the token check lets it through);
    * parameters the route reads as the fast lane reads them (path, query, validation);
    * an answer at hand (``answer``: a page of a cached epoch, a slice on the event loop,
      no store read, no draw, nothing awaited before the response starts, so the request
      timeout cannot run out, and no work checks its deadline).

    Then it does what the access log middleware does, in the same order and with the same
    values (the request id from ``X-Request-ID`` or a new one, in the context and on the
    answer; requests in flight; the count, the time and the access line under the
    route's template), and sends the response's own headers and body. Anything else
    (another route or method, a refused token, a body header, an unread or refused
    parameter, a page that needs a thread, a :class:`SamplingError`, any other failure
    before the response starts) goes down the whole app untouched, where the same layers
    answer it as before. ``create_app(fast_lane=False)`` leaves the floor out; tests
    compare the two byte for byte. With OpenTelemetry on, there is no floor: FastAPI
    makes a span of every request, and pages cross the app to the fast lane. A ``POST``
    goes to the floor's lane for small run updates when it has one (NOTE [Updates at
    the floor] in ``update_lane.py``), which takes or leaves it in the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sampleplan.service.api.auth import bearer_token_of, token_matches
from sampleplan.service.api.fastlane import RouteReader
from sampleplan.service.api.observability import RequestRecorder, request_id_of
from sampleplan.service.errors import SamplingError
from sampleplan.service.logs import request_id_var

if TYPE_CHECKING:
    from sampleplan.service.api.update_lane import UpdateLane
    from sampleplan.service.catalog import Catalog

__all__ = ["Floor", "FloorAnswer", "FloorFirst"]

#: Answers a request from the app's catalog, its ``Accept`` header's value and validated
#: parameters, with a response whose work is done, or ``None`` when the answer is not at
#: hand.
FloorAnswer = Callable[["Catalog", Scope, bytes | None, dict[str, Any]], Response | None]

#: The methods the floor answers (a route's ``HEAD`` answers with its ``GET``'s headers).
_METHODS = frozenset({"GET", "HEAD"})

#: Headers that send a request down the stack, to the body limit.
_BODY_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"content-encoding"})


class FloorFirst(FastAPI):
    """A FastAPI app whose :attr:`floor` answers before FastAPI's own layers (its 500
    guard, its telemetry hook, its body limit), which the pages it answers would cross
    untouched; everything else goes through the whole app. See NOTE [Serving at the
    floor]."""

    #: Set by the app's factory once every route and middleware is in place.
    floor: Floor | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        floor = self.floor
        if floor is None or self.root_path:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self  # as Starlette's own call records it
        await floor(scope, receive, send)

    async def beneath_the_floor(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The whole app, for what the floor does not answer."""
        await super().__call__(scope, receive, send)


class _Lane:
    __slots__ = ("answer", "reader", "template")

    def __init__(self, route: APIRoute, answer: FloorAnswer) -> None:
        self.reader = RouteReader(route)
        self.template = route.path
        self.answer = answer


class Floor:
    """Answers ``GET`` and ``HEAD`` requests of ``lanes`` whose answer is at hand; see
    NOTE [Serving at the floor]."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        lanes: Sequence[tuple[APIRoute, FloorAnswer]],
        recorder: RequestRecorder,
        tokens: tuple[str, ...],
        updates: UpdateLane | None = None,
    ) -> None:
        self.app = app
        #: Small JSON run updates (NOTE [Updates at the floor] in ``update_lane.py``).
        self.updates = updates
        self.lanes = [_Lane(route, answer) for route, answer in lanes]
        self.recorder = recorder
        self.in_flight = recorder.metrics.requests_in_flight
        self.tokens = tokens
        #: The app's catalog while the app runs (its lifespan sets it); ``None`` before.
        self.catalog: Catalog | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS:
            updates = self.updates
            if updates is not None and scope["type"] == "http" and scope["method"] == "POST":
                await updates(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            found = self._answer(scope)
        except Exception:
            # Not ours to answer: the stack meets the same failure, and its 500 guard,
            # problem handlers and access log answer and record it.
            found = None
        if found is None:
            await self.app(scope, receive, send)
            return
        response, template, request_id = found
        await self._send(scope, receive, send, response, template, request_id, started)

    def _answer(self, scope: Scope) -> tuple[Response, str, str] | None:
        """The response to ``scope`` with its route's template and its request id, when
        the floor answers it (the request id then set in the context), else ``None``."""
        accept = authorization = caller_id = None
        for name, value in scope["headers"]:
            if name == b"accept":
                accept = value if accept is None else accept
            elif name == b"authorization":
                authorization = value if authorization is None else authorization
            elif name == b"x-request-id":
                caller_id = value if caller_id is None else caller_id
            elif name in _BODY_HEADERS:
                return None
        catalog = self.catalog
        if catalog is None:
            return None
        for lane in self.lanes:
            parameters = lane.reader.read_fresh(scope)
            if parameters is not None:
                break
        else:
            return None
        if self.tokens:
            token = None if authorization is None else bearer_token_of(authorization)
            if token is None or not token_matches(token, self.tokens):
                return None  # the token check refuses it
        request_id = request_id_of(caller_id)
        request_id_var.set(request_id)
        try:
            response = lane.answer(catalog, scope, accept, parameters)
        except SamplingError:
            return None  # the route meets it again, and answers it as problem+json
        return None if response is None else (response, lane.template, request_id)

    async def _send(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        response: Response,
        template: str,
        request_id: str,
        started: float,
    ) -> None:
        status = 500
        self.in_flight.inc()
        try:
            status = response.status_code
            headers = response.raw_headers
            headers.append((b"x-request-id", request_id.encode("latin-1")))
            if type(response) is Response and response.background is None:
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": response.body})
            else:  # a streamed answer: its own way of sending, its own headers
                await response(scope, receive, send)
        finally:
            self.in_flight.dec()
            self.recorder.record(scope, status, time.perf_counter() - started, request_id, template)
