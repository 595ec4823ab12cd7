"""Request ids, access logs and request metrics, as the outermost pure ASGI middleware.

Being outermost, it sees every answer the service gives, the 401s, 413s and 504s of the
inner middlewares included, and times each request to its response's last byte.
"""

from __future__ import annotations

import logging
import os
import re
import time
from random import getrandbits
from typing import Any, cast

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sampleplan.service.api.auth import OPEN_PATHS
from sampleplan.service.logs import JsonFormatter, request_id_var, sole_json_handler
from sampleplan.service.metrics import ServiceMetrics

REQUEST_ID_HEADER = "X-Request-ID"

access_logger = logging.getLogger("sampleplan.access")

# A caller's id is kept when it is short and plain, so it cannot forge log structure.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")

#: The route label of requests that match no route: raw paths would be unbounded.
UNMATCHED_ROUTE = "unmatched"


def request_id_from(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` when it is acceptable, else a fresh random one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            return request_id_of(value)
    return new_request_id()


def request_id_of(header: bytes | None) -> str:
    """The request id of an ``X-Request-ID`` header's value (``None``: no header)."""
    if header is not None:
        candidate: str = header.decode("latin-1").strip()
        if _VALID_REQUEST_ID.fullmatch(candidate):
            return candidate
    return new_request_id()


#: The bits a version-4 UUID fixes (its version, then its RFC 4122 variant), and their values.
_UUID4_FIXED = (0xF << 76) | (0x3 << 62)
_UUID4_BITS = (0x4 << 76) | (0x2 << 62)


def new_request_id() -> str:
    """A random version-4 UUID's 32 hex digits (``uuid.uuid4().hex``'s form).

    From the process's Mersenne Twister, not from ``os.urandom``: a request id names a
    request in logs and answers, and guards nothing, and the system call was a twentieth
    of a page's time at the floor. The ``random`` module seeds itself again in a forked
    worker, so workers do not repeat each other's ids.

    Ids are made :data:`_ID_BATCH` at a time and handed out one by one: made one per
    request, the generator's state and the formatting of a 128-bit number were cold by
    the next request (NOTE [A page at the floor in one step] in
    ``service/api/streams.py``). A forked child forgets the ids its parent had left."""
    while True:  # other threads may take the ids made before this one gets one
        try:
            return _SPARE_IDS.pop()
        except IndexError:
            _SPARE_IDS.extend(
                [
                    "%032x" % ((getrandbits(128) & ~_UUID4_FIXED) | _UUID4_BITS)
                    for _ in range(_ID_BATCH)
                ]
            )


#: How many request ids are made at once, and those not handed out yet (a list's pop and
#: extend are each one step under the GIL: threads may take ids from it at once).
_ID_BATCH = 64
_SPARE_IDS: list[str] = []
os.register_at_fork(after_in_child=_SPARE_IDS.clear)


class RouteTemplates:
    """Finds the path template (``/v1/plans/{plan_id}``) of the route a request went to.

    The router records the route in the scope. Requests refused before routing (a 401, a
    413) have none, so their path is matched here against the documented paths, and
    they are counted under their route too.
    """

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._patterns: list[tuple[re.Pattern[str], str]] | None = None

    def _documented(self) -> list[tuple[re.Pattern[str], str]]:
        if self._patterns is None:
            # Built on first use: by then every router has been included.
            paths = self._app.openapi()["paths"]
            self._patterns = [(compile_path(path)[0], path) for path in paths]
        return self._patterns

    def __call__(self, scope: Scope) -> str:
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str):
            return path
        for pattern, template in self._documented():
            if pattern.match(scope["path"]):
                return template
        return UNMATCHED_ROUTE


class RequestRecorder:
    """Counts, times and logs answered requests: what :class:`ObservabilityMiddleware`
    records for each, and what the floor (NOTE [Serving at the floor] in ``floor.py``)
    records for the pages it answers itself."""

    def __init__(self, metrics: ServiceMetrics, routes: RouteTemplates) -> None:
        self.metrics = metrics
        self.route_template = routes
        # Each (method, route, status)'s children, found once: ``labels()`` checks and
        # locks on every call, a tenth of a cached page's time at the floor.
        self._counted: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def children(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        """The request counter's and the duration histogram's children that count a
        request of ``method`` to ``route`` answered ``status``."""
        key = (method, route, status)
        children = self._counted.get(key)
        if children is None:
            children = (
                self.metrics.requests.labels(method, route, str(status)),
                self.metrics.request_seconds.labels(method, route),
            )
            if len(self._counted) < _MAX_CHILDREN:
                self._counted[key] = children
        return children

    def record(
        self,
        scope: Scope,
        status: int,
        elapsed: float,
        request_id: str,
        route: str | None = None,
    ) -> None:
        """Count and log one request; ``route`` is its template when the caller knows it."""
        method = str(scope["method"])
        if route is None:
            route = self.route_template(scope)
        counter, histogram = self.children(method, route, status)
        counter.inc()
        histogram.observe(elapsed)
        self.log(scope, status, elapsed, request_id, route)

    def log(self, scope: Scope, status: int, elapsed: float, request_id: str, route: str) -> None:
        """Write the access line of :meth:`record` (when its level is enabled)."""
        # Probes and scrapes arrive every few seconds; they would drown the real traffic.
        level = logging.DEBUG if scope["path"] in OPEN_PATHS and status < 400 else logging.INFO
        if access_logger.isEnabledFor(level):
            self.write(scope, level, status, elapsed, request_id, route)

    def write(
        self, scope: Scope, level: int, status: int, elapsed: float, request_id: str, route: str
    ) -> None:
        """Write :meth:`log`'s access line at ``level``, known to be enabled."""
        method = str(scope["method"])
        path = scope["path"]
        client = (scope.get("client") or (None,))[0]
        handler = sole_json_handler(access_logger, level)
        if handler is None:
            access_logger.handle(
                _access_record(level, request_id, method, path, route, status, elapsed, client)
            )
            return
        # NOTE [Access lines] in service/logs.py: the line its record would be, made by
        # the handler when it writes it (NOTE [Access lines written by the round]).
        formatter = cast(JsonFormatter, handler.formatter)
        handler.emit_made(
            _access_line,
            (
                formatter,
                time.time(),
                level,
                request_id,
                method,
                path,
                route,
                status,
                elapsed,
                client,
            ),
            _access_record_of,
        )


def _access_line(
    formatter: JsonFormatter,
    created: float,
    level: int,
    request_id: str,
    method: str,
    path: str,
    route: str,
    status: int,
    elapsed: float,
    client: str | None,
) -> str:
    """The access line of a request that ended at ``created``: its fields in the order
    JsonFormatter.format writes its record's (the record's extras follow the request id,
    which is written once), written around its time, request id and duration
    (NOTE [An access line around what changes])."""
    key = (level, method, path, route, status, client)
    parts = _LINE_PARTS.get(key)
    if parts is None:
        parts = _line_parts(formatter, key)
    milliseconds = _milliseconds(elapsed)
    if (
        parts is None
        or not (request_id.isalnum() or _PLAIN_TEXT.fullmatch(request_id))
        or not 0.0 <= milliseconds < 1e15
    ):
        return _whole_access_line(
            formatter, created, level, request_id, method, path, route, status, elapsed, client
        )
    before_id, before_duration, closing = parts
    return (
        '{"time":"'
        + formatter.time_text(created)
        + before_id
        + request_id
        + before_duration
        + repr(milliseconds)
        + closing
    )


def _whole_access_line(
    formatter: JsonFormatter,
    created: float,
    level: int,
    request_id: str,
    method: str,
    path: str,
    route: str,
    status: int,
    elapsed: float,
    client: str | None,
) -> str:
    """:func:`_access_line` written whole, every field by the JSON writer."""
    return formatter.dumps(
        _access_entry(
            formatter.time_text(created),
            _LEVEL_TEXT[level],
            request_id,
            method,
            path,
            route,
            status,
            elapsed,
            client,
        )
    )


# NOTE [An access line around what changes]
#     Of an access line's fields, three change from request to request: its time, its
#     request id and its duration. The others (level, method, path, route, status,
#     client) repeat, request after request, for the pages of one plan or run fetched by
#     one host. The JSON writer writes them once for each such set
#     (:func:`_line_parts`, the line of an empty time and request id and a zero duration,
#     cut where those go: after ``{"time":"``, ``"request_id":"`` and ``"duration_ms":``,
#     which are found once each in the text since a JSON string holds no bare quote),
#     and a line is those parts with the three between them (0.97 us rather than 1.37
#     us in-process). The three need no escape: a time is digits and ``-:.+T``; a request
#     id is taken this way only when it holds none of the characters JSON escapes; a
#     duration is a float written as Python's ``repr`` writes it, which is what the JSON
#     writer writes for a number in milliseconds from 0 to below 10**15 (no exponent).
#     Anything else is written whole, as before. Tests compare the two for hostile paths,
#     request ids and durations.


#: Each line's parts (NOTE [An access line around what changes]), by the fields that
#: repeat; bounded (paths hold plan and run ids).
_LINE_PARTS: dict[tuple[int, str, str, str, int, str | None], tuple[str, str, str]] = {}
_MAX_LINE_PARTS = 4096

#: Text JSON writes as it is (what a valid ``X-Request-ID`` may hold).
_PLAIN_TEXT = re.compile(r"[A-Za-z0-9._:/+=@-]*")


def _line_parts(
    formatter: JsonFormatter, key: tuple[int, str, str, str, int, str | None]
) -> tuple[str, str, str] | None:
    """The text of an access line before its request id (after its time), before its
    duration and after it, for the fields ``key``; ``None`` for fields whose line does
    not cut so (kept whole)."""
    level, method, path, route, status, client = key
    text = formatter.dumps(
        _access_entry("", _LEVEL_TEXT[level], "", method, path, route, status, 0.0, client)
    )
    opening, _, rest = text.partition('{"time":"')
    before_id, found_id, rest = rest.partition('"request_id":"')
    before_duration, found_duration, closing = rest.partition('"duration_ms":0.0')
    if opening or not found_id or not found_duration:
        return None
    parts = (before_id + found_id, before_duration + '"duration_ms":', closing)
    if len(_LINE_PARTS) >= _MAX_LINE_PARTS:
        _LINE_PARTS.clear()
    _LINE_PARTS[key] = parts
    return parts


def _milliseconds(elapsed: float) -> float:
    """A line's ``duration_ms`` of ``elapsed`` seconds: whole microseconds as
    milliseconds (``round(elapsed * 1000, 3)`` gives the same number but at an exact tie,
    at five times the cost: its decimal rounding)."""
    return round(elapsed * 1e6) / 1000


def _access_entry(
    time_text: str,
    level_text: str,
    request_id: str,
    method: str,
    path: str,
    route: str,
    status: int,
    elapsed: float,
    client: str | None,
) -> dict[str, Any]:
    """An access line's fields, in its order: the four every line begins with, then the
    line's own (its record's extras), ``elapsed`` in milliseconds to three places. One
    literal: made for every request, it was a fifth of the line's cost as two dicts
    merged."""
    return {
        "time": time_text,
        "level": level_text,
        "logger": access_logger.name,
        "message": f"{method} {path} {status:d}",
        "request_id": request_id,
        "method": method,
        "path": path,
        "route": route,
        "status": status,
        "duration_ms": _milliseconds(elapsed),
        "client": client,
    }


#: The fields every line begins with, which a record has of its own (not extras).
_LINE_OPENING = ("time", "level", "logger", "message")


def _access_record_of(formatter: JsonFormatter, created: float, *fields: Any) -> logging.LogRecord:
    """:func:`_access_record` of :func:`_access_line`'s arguments."""
    return _access_record(*fields)


def _access_record(
    level: int,
    request_id: str,
    method: str,
    path: str,
    route: str,
    status: int,
    elapsed: float,
    client: str | None,
) -> logging.LogRecord:
    """The record of an access line: what ``access_logger.log()`` makes, but for its
    search of the stack for the caller (a tenth of the line's cost): the caller is
    :meth:`RequestRecorder.record`."""
    extra = _access_entry("", "", request_id, method, path, route, status, elapsed, client)
    for name in _LINE_OPENING:
        del extra[name]
    return access_logger.makeRecord(
        access_logger.name,
        level,
        __file__,
        _RECORD_LINE,
        "%s %s %d",
        (method, path, status),
        None,
        "record",
        extra,
    )


#: The ``level`` of a JSON line of each level the access log writes at.
_LEVEL_TEXT = {
    level: logging.getLevelName(level).lower() for level in (logging.DEBUG, logging.INFO)
}

#: Where access records say they were made: :meth:`RequestRecorder.record`.
_RECORD_LINE = RequestRecorder.record.__code__.co_firstlineno

#: Label sets whose children :class:`RequestRecorder` keeps at hand (methods and statuses
#: are few, routes are templates; a bound all the same).
_MAX_CHILDREN = 1024


class ObservabilityMiddleware:
    """Gives every request an id (returned in ``X-Request-ID``), logs it and counts it."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, recorder: RequestRecorder) -> None:
        self.app = app
        self.metrics = metrics
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        # Not reset afterwards: each request runs in its own task and context, and an
        # error handler further out still logs under this id.
        request_id_var.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        self.metrics.requests_in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.requests_in_flight.dec()
            elapsed = time.perf_counter() - started
            self.recorder.record(scope, status, elapsed, request_id)
