"""The floor: pages already in memory answered before the middleware stack.

NOTE [Serving at the floor]
    With the fast lane (NOTE [Fast lane] in ``fastlane.py``) a cached page cost about
    230 us of one core, of which the page itself (a slice, its JSON or bytes) was a
    tenth; a bare ASGI app on the same server answered a body of the same size in a
    fifth of the time, so pages ran at 0.14x of it. The rest went to the layers every
    request crosses: each middleware's own coroutine and ``send`` wrapper, the request
    timeout's timer, cancel scope and deadline, the body limit's header reads, labelled
    metrics looked up by their labels, and Starlette's response objects.

    :class:`Floor` stands before the whole app: :class:`FloorFirst`, the app's class, asks
    it about every ``GET`` and ``HEAD`` before FastAPI's own layers (its 500 guard, its
    telemetry hook, its body limit: a seventh of a page's time, crossed untouched by a
    ``GET`` without a body), and sends and counts its answers itself, in the same
    coroutine; the floor holds the app's catalog while the app runs. For a ``GET`` or ``HEAD``
    of one of its routes it reads the headers once, and answers the request itself when
    all of this holds, so that the answer is the one the stack gives:

    * no ``Content-Length``, ``Transfer-Encoding`` or ``Content-Encoding`` header (the
      body limit lets such a request through untouched);
    * a valid bearer token, when tokens are configured (the token check lets it through);
    * parameters the route reads as the fast lane reads them (path, query, validation);
    * an answer at hand (``answer``: a page of a cached epoch, a slice on the event loop,
      no store read, no draw, nothing awaited before the response starts, so the request
      timeout cannot run out, and no work checks its deadline). Its lanes: a plan's
      ``/indices`` and a batch plan's ``/batches`` (NOTE [An epoch of batches drawn
      whole] in ``catalog.py``).

    Then it does what the access log middleware does, in the same order and with the same
    values (the request id from ``X-Request-ID`` or a new one, in the context and on the
    answer; requests in flight; the count, the time and the access line under the
    route's template), and sends the response's own headers and body. It counts by
    adding to its thread's rows of those metrics (NOTE [Counting per thread] in
    ``metrics.py``), found once per thread and method, and asks for the access line only
    when its level is on; so in prometheus_client's multiprocess mode, whose values
    live in files, there is no floor. Anything else
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

import logging
from collections.abc import Callable, Sequence
from threading import get_ident
from time import perf_counter
from typing import TYPE_CHECKING, Any, cast

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from sampleplan.service.api.auth import bearer_token_of, token_matches
from sampleplan.service.api.fastlane import RouteReader
from sampleplan.service.api.observability import (
    RequestRecorder,
    access_logger,
    new_request_id,
    request_id_of,
)
from sampleplan.service.errors import SamplingError
from sampleplan.service.logs import request_id_var
from sampleplan.service.metrics import ServiceMetrics, observe_in_row, thread_row

if TYPE_CHECKING:
    from sampleplan.service.api.update_lane import UpdateLane
    from sampleplan.service.catalog import Catalog

__all__ = ["Floor", "FloorAnswer", "FloorFirst"]

#: Answers a request from the app's catalog, its ``Accept`` header's value and validated
#: parameters, with the raw headers and the body of a ``200`` whose work is done, or
#: ``None`` when the answer is not at hand.
FloorAnswer = Callable[
    ["Catalog", Scope, bytes | None, dict[str, Any]], tuple[list[tuple[bytes, bytes]], bytes] | None
]

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
        if floor is None or scope["type"] != "http" or self.root_path:
            await super().__call__(scope, receive, send)
            return
        if scope["method"] in _METHODS:
            started = perf_counter()
            try:
                found = floor.answer(scope)
            except Exception:
                # Not ours to answer: the stack meets the same failure, and its 500 guard,
                # problem handlers and access log answer and record it.
                found = None
            if found is not None:
                headers, body, lane, request_id = found
                method = scope["method"]
                rows = lane.rows.get((get_ident(), method))
                if rows is None:
                    rows = floor.rows(lane, method)
                # What the access log middleware records, in its order: in flight while
                # sending, then the count, the time and the line (NOTE [Counting per
                # thread]: the rows are this thread's, so each += is the thread's own).
                in_flight = rows.in_flight
                in_flight[0] += 1
                try:
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                finally:
                    in_flight[0] -= 1
                    elapsed = perf_counter() - started
                    rows.requests[0] += 1
                    observe_in_row(rows.seconds, rows.bounds, elapsed)
                    if access_logger.isEnabledFor(logging.INFO):  # no floor path is a probe's
                        floor.recorder.write(
                            scope, logging.INFO, 200, elapsed, request_id, lane.template
                        )
                return
        elif floor.updates is not None and scope["method"] == "POST":
            await floor.updates(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def beneath_the_floor(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The whole app, for what the floor's lanes leave."""
        await super().__call__(scope, receive, send)


class _Rows:
    """One thread's rows of the metrics a lane's answers update (NOTE [Counting per
    thread] in ``metrics.py``): requests in flight, and the count and the time of
    ``200`` answers to one method of its route."""

    __slots__ = ("bounds", "in_flight", "requests", "seconds")

    def __init__(self, recorder: RequestRecorder, method: str, template: str) -> None:
        counter, histogram = recorder.children(method, template, 200)
        rows = (
            thread_row(recorder.metrics.requests_in_flight),
            thread_row(counter),
            thread_row(histogram),
        )
        if None in rows:
            raise TypeError("the floor counts per thread")  # see Floor.serves
        self.in_flight, self.requests, self.seconds = cast(tuple[list[float], ...], rows)
        self.bounds: Sequence[float] = histogram._upper_bounds


class _Lane:
    __slots__ = ("answer", "prefix", "reader", "rows", "suffix", "template")

    def __init__(self, route: APIRoute, answer: FloorAnswer) -> None:
        self.reader = RouteReader(route)
        self.template = route.path
        # The template's text before its first parameter and after its last, which every
        # path of the route holds and ends with (a server's root path before it): a path
        # under a root path without them is not the lane's, told without matching the
        # route (``/v1/plans/`` and ``/indices``). Other paths' lanes are found once, by
        # the route's pattern (NOTE [A path's lanes found once]).
        self.prefix = route.path.partition("{")[0]
        self.suffix = route.path.rpartition("}")[2] if "{" in route.path else ""
        self.answer = answer
        #: Each (thread, method)'s rows, found once.
        self.rows: dict[tuple[int, str], _Rows] = {}


class Floor:
    """Answers ``GET`` and ``HEAD`` requests of ``lanes`` whose answer is at hand; see
    NOTE [Serving at the floor].

    NOTE [A path's lanes found once]
        Pages are asked for by the same few paths (a plan's or a run's ``/indices``),
        each with another query. Which lanes a path is for, and its parameters as each
        lane's route reads them (its pattern matched, an id checked against its own
        pattern), depend on the path alone, so they are found once per path and kept
        (:attr:`MAX_PATHS` paths, then all are forgotten: paths are the callers'); a
        request then reads only its query. A path no lane reads is kept too, with no
        lanes. Under a server's root path each lane's route reads the whole request, as
        before (not kept).
    """

    #: How many paths' lanes are kept before all are forgotten.
    MAX_PATHS = 4096

    def __init__(
        self,
        *,
        lanes: Sequence[tuple[APIRoute, FloorAnswer]],
        recorder: RequestRecorder,
        tokens: tuple[str, ...],
        updates: UpdateLane | None = None,
    ) -> None:
        #: Small JSON run updates (NOTE [Updates at the floor] in ``update_lane.py``).
        self.updates = updates
        self.lanes = [_Lane(route, answer) for route, answer in lanes]
        self.recorder = recorder
        self.tokens = tokens
        #: The app's catalog while the app runs (its lifespan sets it); ``None`` before.
        self.catalog: Catalog | None = None
        #: Each path's lanes with its parameters (NOTE [A path's lanes found once]).
        self._paths: dict[str, tuple[tuple[_Lane, dict[str, Any]], ...]] = {}

    def _lanes_of(self, path: str) -> tuple[tuple[_Lane, dict[str, Any]], ...]:
        """The lanes whose route matches ``path``, in order, each with the path's
        parameters as its route reads them; kept (NOTE [A path's lanes found once])."""
        at = tuple(
            (lane, path_params)
            for lane in self.lanes
            if (path_params := lane.reader.path_params(path)) is not None
        )
        if len(self._paths) >= self.MAX_PATHS:
            self._paths.clear()
        self._paths[path] = at
        return at

    def _read_under_root(self, scope: Scope) -> tuple[_Lane, dict[str, Any]] | None:
        """The lane of a request under a root path and its parameters, read by each
        lane's route as it is (its pattern, after the root path); not kept."""
        path = scope["path"]
        for lane in self.lanes:
            if path.endswith(lane.suffix) and lane.prefix in path:
                read = lane.reader.read(scope)
                if read is not None:
                    return lane, read[0]
        return None

    @staticmethod
    def serves(metrics: ServiceMetrics) -> bool:
        """Whether a floor can count as the stack counts with ``metrics``: only when they
        count per thread (not in prometheus_client's multiprocess mode)."""
        return thread_row(metrics.requests_in_flight) is not None

    def rows(self, lane: _Lane, method: str) -> _Rows:
        """The calling thread's rows of ``lane``'s answers to ``method``, found once."""
        rows = lane.rows[get_ident(), method] = _Rows(self.recorder, method, lane.template)
        return rows

    def answer(self, scope: Scope) -> tuple[list[tuple[bytes, bytes]], bytes, _Lane, str] | None:
        """The headers and body of the answer to ``scope`` with its lane and its request
        id, when the floor answers it (the request id then set in the context), else
        ``None``."""
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
        path = scope["path"]
        if scope.get("root_path"):  # the server's: each route matches the path as it reads it
            found = self._read_under_root(scope)
            if found is None:
                return None
            lane, parameters = found
        else:
            at = self._paths.get(path)
            if at is None:
                at = self._lanes_of(path)
            for lane, path_params in at:
                read = lane.reader.read_query(path_params, scope["query_string"])
                if read is not None:
                    parameters = read
                    break
            else:
                return None
        if self.tokens:
            token = None if authorization is None else bearer_token_of(authorization)
            if token is None or not token_matches(token, self.tokens):
                return None  # the token check refuses it
        request_id = new_request_id() if caller_id is None else request_id_of(caller_id)
        request_id_var.set(request_id)
        try:
            answer = lane.answer(catalog, scope, accept, parameters)
        except SamplingError:
            return None  # the route meets it again, and answers it as problem+json
        if answer is None:
            return None
        headers, body = answer
        headers.append((b"x-request-id", request_id.encode("latin-1")))
        return headers, body, lane, request_id
