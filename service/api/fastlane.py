"""A fast lane past FastAPI's routing and dependency solving, for the hottest requests.

NOTE [Fast lane]
    A cached page of an epoch is a slice of memory, yet serving it through FastAPI cost
    about 400 us of one core: profiled under load, 57% went to solving the route's
    dependencies (FastAPI re-inspects each of the ten parameters' annotations on every
    request), 15% to matching the path against the routes in turn, and the slice itself
    to a few microseconds. At 64 connections that bounded a replica to ~2000 pages/s and
    put the p99 near 100 ms; and when 64 ranks ask for their shards of a cold epoch at
    once, those 64 x 400 us of event loop were one stall for every other request.

    :class:`FastLane` is the innermost middleware (inside the access log, the token check,
    the body limit and the timeout, so those apply unchanged). For one route it:

    1. matches the request with the route's own ``matches`` (path, method, root path);
    2. validates the path and query parameters in one pydantic call, against a model
       built from the route's declared parameters: the same annotations and constraints
       FastAPI validates them with, so a value is read exactly as the route would read it
       (a query model, such as a stream query of NOTE [Stream queries] in ``streams.py``,
       is read field by field, as FastAPI reads it);
    3. awaits the route's ``answer``, the code the route itself runs once its parameters
       are read (for ``/indices``: a slice on the event loop when the epoch is cached, a
       worker thread otherwise).

    Anything else goes to FastAPI untouched: another route or method, an unknown or
    repeated query parameter, an empty value, a value that fails validation, or a
    :class:`~sampleplan.core.errors.SamplingError` from ``answer`` (the route meets it
    again and answers it as problem+json). So every error is produced by the route
    itself, and the fast lane never answers what the route would refuse.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import annotated_types
import pydantic
from fastapi.routing import APIRoute, APIRouter
from pydantic.fields import FieldInfo
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from sampleplan.service.errors import SamplingError

__all__ = [
    "FastAnswer",
    "FastLane",
    "RouteReader",
    "get_route",
    "parameter_model",
    "query_fields",
]

#: Answers a matched request from its validated parameters (by name), or ``None`` to let
#: the route serve it. May raise :class:`SamplingError`: the route then serves it.
FastAnswer = Callable[[Scope, dict[str, Any]], Awaitable[Response | None]]


def get_route(router: APIRouter, endpoint: Callable[..., Any], *, method: str = "GET") -> APIRoute:
    """The ``method`` route of ``endpoint`` on ``router`` (the one a fast lane stands for)."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.endpoint is endpoint and route.methods == {method}:
            return route
    raise LookupError(f"{endpoint.__name__} has no {method} route on this router")


def parameter_model(route: APIRoute) -> type[pydantic.BaseModel]:
    """A model of the route's path and query parameters, as the route declares them.

    Each field carries the parameter's annotation and its ``Path``/``Query`` field info
    (constraints, alias, default), which is what FastAPI validates a value against; a
    query model's fields are the model's own. Routes with header, cookie or body
    parameters are refused: the fast lane reads only the path and the query string.
    """
    dependant = route.dependant
    if dependant.header_params or dependant.cookie_params or dependant.body_params:
        raise ValueError(f"{route.path}: the fast lane reads only path and query parameters")
    fields: dict[str, Any] = {}
    for param in dependant.path_params:
        fields[param.name] = (param.field_info.annotation, param.field_info)
    for name, info in query_fields(route).items():
        fields[name] = (info.annotation, info)
    model: type[pydantic.BaseModel] = pydantic.create_model(
        f"{route.name}_parameters",
        __config__=pydantic.ConfigDict(extra="forbid"),
        **fields,
    )
    return model


def query_fields(route: APIRoute) -> dict[str, FieldInfo]:
    """The route's query parameters by name, with a query model's fields in its place."""
    fields: dict[str, FieldInfo] = {}
    for param in route.dependant.query_params:
        annotation = param.field_info.annotation
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            fields.update(annotation.model_fields)
        else:
            fields[param.name] = param.field_info
    return fields


#: How a field's plain value is read (NOTE [Parameters read plainly]): an int's bounds
#: ``[low, high)``, or a table of the texts a field takes (a bool's, a ``Literal``'s), or
#: ``None`` for a str taken as it is.
_Plain = tuple[int, int] | dict[str, Any] | None

#: Not a shape read plainly.
_MODEL_ONLY = object()

_BOOLS = {"true": True, "false": False}


def _int_bounds(metadata: list[Any]) -> _Plain | object:
    """``[low, high)`` of an int field from its constraints; plain digits read as at most
    18 of them (a signed 64-bit value), so ``high`` is at most 10**18."""
    low, high = 0, 10**18
    for item in metadata:
        if isinstance(item, annotated_types.Ge) and isinstance(item.ge, int):
            low = max(low, item.ge)
        elif isinstance(item, annotated_types.Gt) and isinstance(item.gt, int):
            low = max(low, item.gt + 1)
        elif isinstance(item, annotated_types.Lt) and isinstance(item.lt, int):
            high = min(high, item.lt)
        elif isinstance(item, annotated_types.Le) and isinstance(item.le, int):
            high = min(high, item.le + 1)
        else:
            return _MODEL_ONLY
    return (low, high)


#: The patterns :func:`_str_pattern` takes: one bracketed class of plain characters and
#: ranges (no escape, no nested bracket), repeated a bounded number of times or more than
#: once, anchored at both ends; Python's ``re`` and the model's regex engine read such a
#: class alike.
_SIMPLE_PATTERN = re.compile(r"\^\[[^\]\\\[]+\](?:\{\d+,\d+\}|\+)\$")


def _str_pattern(info: FieldInfo) -> re.Pattern[str] | None:
    """The pattern of a str field constrained by a pattern alone, of the simple shape of
    :data:`_SIMPLE_PATTERN` (a run id's), compiled to be matched whole; else ``None``.

    The model searches for the pattern in the value; anchored at both ends, that is
    matching the value whole (``$`` does not match before a final newline then, as the
    model's regex engine reads it), which ``fullmatch`` does."""
    if info.annotation is not str or len(info.metadata) != 1:
        return None
    pattern = getattr(info.metadata[0], "pattern", None)
    if not isinstance(pattern, str) or _SIMPLE_PATTERN.fullmatch(pattern) is None:
        return None
    if set(vars(info.metadata[0])) != {"pattern"}:
        return None  # another constraint beside it
    return re.compile(pattern)


def _plain(info: FieldInfo) -> _Plain | object:
    """How a field's value is read without the model, for the common shapes only: a
    bounded int (or an optional one), a bool written ``true`` or ``false``, one of a
    ``Literal``'s strings, an unconstrained str; else :data:`_MODEL_ONLY`."""
    annotation = info.annotation
    metadata = list(info.metadata)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) != 1:
            return _MODEL_ONLY
        annotation = args[0]
    if annotation is int:
        return _int_bounds(metadata)
    if metadata:
        return _MODEL_ONLY
    if annotation is bool:
        return _BOOLS
    if annotation is str:
        return None
    if typing.get_origin(annotation) is typing.Literal:
        choices = typing.get_args(annotation)
        if all(type(choice) is str for choice in choices):
            return {choice: choice for choice in choices}
    return _MODEL_ONLY


class RouteReader:
    """Reads a request's parameters for one route as the route reads them (steps 1 and 2
    of NOTE [Fast lane]); ``None`` for any request the route should read for itself.

    NOTE [Parameters read plainly]
        Validating a page's parameters with the model (a dict made, pydantic's call, its
        fields copied out) was a tenth of a page's own cost at the floor. Most requests
        carry plain values: decimal digits for an int, ``true``/``false``, a literal
        word. Those are read here field by field, each as the model reads it, with the
        field's bounds and its default for what is absent; any value that is not plain,
        or a field of another shape, sends the whole request to the model, whose
        reading (and refusal) is the route's.
    """

    def __init__(self, route: APIRoute) -> None:
        self.route = route
        self.model = parameter_model(route)
        self.aliases = frozenset(info.alias or name for name, info in query_fields(route).items())
        fields = self.model.model_fields
        shapes = {name: _plain(info) for name, info in fields.items()}
        path_names = {param.name for param in route.dependant.path_params}
        #: The path parameters that are strs of a pattern, with the pattern each value
        #: must match whole, as the model matches it.
        self.path_patterns = {
            name: pattern
            for name in path_names
            if (pattern := _str_pattern(fields[name])) is not None
        }
        for name in self.path_patterns:
            shapes[name] = None  # taken as it is once it matches
        plain = all(
            shape is not _MODEL_ONLY
            and (info.alias is None or info.alias == name)
            and info.default_factory is None
            for (name, info), shape in zip(fields.items(), shapes.values(), strict=True)
        )
        #: How each query field's plain value is read, or ``None`` when the model reads
        #: every request (a field of another shape).
        self.plain: dict[str, _Plain] | None = (
            {name: shape for name, shape in shapes.items() if name not in path_names}  # type: ignore[misc]
            if plain
            else None
        )
        #: The path parameters taken as they are (unconstrained strs); else the model's.
        self.plain_path = plain and all(shapes[name] is None for name in path_names)
        self.path_regex = route.path_regex
        #: The fields absent from a request, at their defaults (required ones left out).
        self.defaults = {
            name: info.default for name, info in fields.items() if not info.is_required()
        }
        #: The query's fields in the order of :attr:`pattern`'s groups, and what makes
        #: each one's value of its plain text (two tuples, indexed by group: a match
        #: usually holds a few of the fields, and only those are read).
        self.names: tuple[str, ...] = ()
        self.reads: tuple[Callable[[str], Any], ...] = ()
        #: A query of plain values in one match (NOTE [Parameters read plainly]), or
        #: ``None`` when a field's bounds are not all written as a pattern.
        self.pattern: re.Pattern[str] | None = None
        if self.plain is not None and self.plain_path:
            found = _query_pattern(self.plain)
            if found is not None:
                self.pattern, self.names, self.reads = found

    def read(self, scope: Scope) -> tuple[dict[str, Any], Scope] | None:
        """The validated parameters by name, and the scope the router would add."""
        match, child_scope = self.route.matches(scope)
        if match is not Match.FULL:
            return None
        path_params = child_scope["path_params"]
        if self._refuses(path_params):
            return None
        parameters = self.read_query(path_params, scope["query_string"])
        return None if parameters is None else (parameters, child_scope)

    def path_params(self, path: str) -> dict[str, Any] | None:
        """The path parameters of ``path`` (a server's path, without a root path), as the
        route's pattern and converters read them; ``None`` when the route does not
        match it or refuses them. (A function of the path alone: the floor keeps it by
        path, NOTE [A path's lanes found once] in ``floor.py``.)"""
        match = self.path_regex.match(path)
        if match is None:
            return None
        convertors = self.route.param_convertors
        path_params = {
            name: convertors[name].convert(value) for name, value in match.groupdict().items()
        }
        return None if self._refuses(path_params) else path_params

    def read_query(
        self, path_params: Mapping[str, Any], query_string: bytes
    ) -> dict[str, Any] | None:
        """The parameters of a request with ``path_params`` (the route's, not refused;
        left as they are) and ``query_string``: its plain values read field by field
        (NOTE [Parameters read plainly]), else the model's reading."""
        if self.plain is not None and self.plain_path:
            parameters = self._read_plainly(query_string)
            if parameters is not None:
                parameters.update(path_params)
                return parameters
        return self._modelled(path_params, query_string)

    def _refuses(self, path_params: Mapping[str, Any]) -> bool:
        """Whether the route refuses these path parameters: a str whose field's pattern
        it does not match whole."""
        for name, pattern in self.path_patterns.items():
            value = path_params.get(name)
            if type(value) is str and pattern.fullmatch(value) is None:
                return True
        return False

    def _modelled(
        self, path_params: Mapping[str, Any], query_string: bytes
    ) -> dict[str, Any] | None:
        """The parameters as the route's model reads them (for a query not read plainly)."""
        query = self.query(query_string)
        if query is None:
            return None
        try:
            parameters = self.model.model_validate({**path_params, **query})
        except pydantic.ValidationError:
            return None  # the route answers it, with its 422
        # The fields by name, as dict(parameters) has them (the model forbids extras).
        return dict(parameters.__dict__)

    def _read_plainly(self, query_string: bytes) -> dict[str, Any] | None:
        """The query's fields read as plain values (NOTE [Parameters read plainly]), the
        absent ones at their defaults; ``None`` for a query only the model reads: a value
        that is not plain, an escape, an unknown, repeated or empty name or value, a
        piece without ``=``."""
        plain = self.plain
        assert plain is not None
        text = query_string.decode("latin-1")
        pattern = self.pattern
        if pattern is not None:
            matched = pattern.fullmatch(text)
            if matched is not None:  # each piece a known name, once, with a plain value
                parameters = self.defaults.copy()
                names, reads = self.names, self.reads
                for index, value in enumerate(matched.groups()):
                    if value is not None:
                        parameters[names[index]] = reads[index](value)
                return parameters
        if "%" in text or "+" in text:
            return None
        # Pairs by name in one step: a piece without "=" fails dict(), a repeated name
        # leaves fewer names than pieces (empty pieces are skipped, as parse_qsl skips them).
        pairs = [piece.split("=", 1) for piece in text.split("&") if piece]
        try:
            given: dict[str, str] = dict(pairs)
        except ValueError:
            return None
        if len(given) != len(pairs) or not given.keys() <= plain.keys():
            return None
        parameters = self.defaults.copy()
        for name, value in given.items():
            shape = plain[name]
            if type(shape) is tuple:
                if len(value) > 18 or not (value.isdigit() and value.isascii()):
                    return None
                number = int(value)
                if not shape[0] <= number < shape[1]:
                    return None
                parameters[name] = number
            elif shape is None:
                if not value:
                    return None
                parameters[name] = value
            else:
                literal = shape.get(value)  # type: ignore[union-attr]
                if literal is None:
                    return None
                parameters[name] = literal
        return parameters

    def query(self, query_string: bytes) -> Mapping[str, str] | None:
        """The query parameters, or ``None`` for any the route should see for itself."""
        text = query_string.decode("latin-1")
        if "%" in text or "+" in text:
            try:
                pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False)
            except ValueError:
                return None
        else:
            # What parse_qsl makes of a query with nothing to unquote, in a fraction of its
            # time: empty pieces skipped, a piece without "=" a blank value.
            pieces = (piece.partition("=") for piece in text.split("&") if piece)
            pairs = [(name, value) for name, _, value in pieces]
        query: dict[str, str] = {}
        aliases = self.aliases
        for name, value in pairs:
            # Unknown names (FastAPI ignores them), repeats (it keeps the last) and empty
            # values are rare: the route's own reading of them is the one that counts.
            if name not in aliases or name in query or value == "":
                return None
            query[name] = value
        return query


def _int_pattern(low: int, high: int) -> str | None:
    """A pattern of the decimal texts of ints in ``[low, high)`` without leading zeros,
    for ``low`` 0 or 1, as many digits as all stay below ``high`` (longer ones are read
    field by field); ``None`` for another ``low``."""
    digits = len(str(high)) - 1  # every number of this many digits is below high
    if low not in (0, 1) or digits < 1:
        return None
    pattern = f"[1-9][0-9]{{0,{digits - 1}}}"
    return pattern if low == 1 else f"0|{pattern}"


def _query_pattern(
    plain: Mapping[str, _Plain],
) -> tuple[re.Pattern[str], tuple[str, ...], tuple[Callable[[str], Any], ...]] | None:
    """A pattern of the queries of plain values of ``plain``'s fields, in any order, each
    field at most once, with a group for each field's value; the fields in the order
    of the groups, and what reads each one's text (NOTE [Parameters read plainly]);
    ``None`` when an int's bounds have no such pattern."""
    pieces = []
    reads: list[Callable[[str], Any]] = []
    for name, shape in plain.items():
        read: Callable[[str], Any]
        if type(shape) is tuple:
            values = _int_pattern(*shape)
            if values is None:
                return None
            read = int
        elif shape is None:
            values, read = "[^&%+]+", str
        else:
            assert isinstance(shape, dict)
            values, read = "|".join(map(re.escape, shape)), shape.__getitem__
        # The value, then the piece's end, and no later piece of the same name.
        field = re.escape(name)
        pieces.append(f"{field}=({values})(?=&|\\Z)(?!(?s:.*)&{field}=)")
        reads.append(read)
    # Pieces joined by "&", none empty: a query with anything else is read field by field.
    # (A group in a repeat keeps what it matched last: each field's value, as it is once.)
    alternatives = "|".join(pieces)
    pattern = re.compile(f"(?:(?:{alternatives})(?:&(?!\\Z)|\\Z))+")
    return pattern, tuple(plain), tuple(reads)


class FastLane:
    """Serves ``route``'s well-formed requests past FastAPI's routing; see NOTE [Fast lane]."""

    def __init__(self, app: ASGIApp, *, route: APIRoute, answer: FastAnswer) -> None:
        self.app = app
        self.route = route
        self.answer = answer
        self.reader = RouteReader(route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._try(scope) if scope["type"] == "http" else None
        if response is None:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)

    async def _try(self, scope: Scope) -> Response | None:
        read = self.reader.read(scope)
        if read is None:
            return None
        parameters, child_scope = read
        try:
            response = await self.answer(scope, parameters)
        except SamplingError:
            return None  # the route raises it again, and answers it as problem+json
        if response is not None:
            # What the router would have recorded: the access log and metrics read it.
            scope.update(child_scope)
            scope["route"] = self.route
        return response
