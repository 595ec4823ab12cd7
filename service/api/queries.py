"""Every route refuses query parameters it does not take, and any given twice.

NOTE [Query parameters]
    FastAPI ignores a query parameter no route declares and keeps the last of a repeated
    one, so ``?epcoh=3`` answered epoch 0's stream with a 200, and ``?epoch=3&epoch=4``
    epoch 4's. An app-wide dependency (:func:`check_query`) runs before each route's own
    parameters are read: a name the route does not take, or a name given more than once
    (unless the route declares a list), is a 422 ``invalid-input`` problem in the shape of
    every validation error (``errors`` lists ``query.<name>`` for each). The names a route
    takes are its declared query parameters (a query model's fields, NOTE [Stream
    queries] in ``streams.py``) plus those it reads from the raw query itself, declared
    with :func:`reads_query`. The fast lane (NOTE [Fast lane] in ``fastlane.py``) leaves
    any unknown or repeated name to the route, so both lanes answer the same 422. Not
    checked: the docs pages (``/docs``, its OAuth2 redirect, ``/redoc``: Swagger UI's
    redirect page is given the identity provider's parameters), the probes and
    ``/metrics`` (load balancers and scrapers add parameters of their own, such as
    Prometheus's ``name[]`` filter), which answer the same whatever the query.
"""

from __future__ import annotations

import typing
from collections import Counter

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request

from sampleplan.service.api.fastlane import query_fields

__all__ = ["check_query", "reads_query"]

#: Paths whose routes read (some of) their query themselves: the names they take.
_READ_BY_ROUTE: dict[str, frozenset[str]] = {}

#: Paths not checked (NOTE [Query parameters]).
_UNCHECKED = frozenset(
    {"/docs", "/docs/oauth2-redirect", "/redoc", "/healthz", "/readyz", "/metrics"}
)

#: Per route: the names it takes, and those of them it takes more than once.
_NAMES: dict[int, tuple[frozenset[str], frozenset[str]]] = {}


def reads_query(path: str, names: typing.Iterable[str]) -> None:
    """Declare that the route at ``path`` reads these query parameters itself."""
    _READ_BY_ROUTE[path] = _READ_BY_ROUTE.get(path, frozenset()) | frozenset(names)


def _is_list(annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return True
    return any(_is_list(arg) for arg in typing.get_args(annotation) if arg is not type(None))


def _names(route: APIRoute) -> tuple[frozenset[str], frozenset[str]]:
    known = _NAMES.get(id(route))
    if known is None:
        fields = query_fields(route)
        taken = {info.alias or name for name, info in fields.items()}
        repeatable = {
            info.alias or name for name, info in fields.items() if _is_list(info.annotation)
        }
        known = (
            frozenset(taken) | _READ_BY_ROUTE.get(route.path, frozenset()),
            frozenset(repeatable),
        )
        _NAMES[id(route)] = known
    return known


async def check_query(request: Request) -> None:
    """422 for a query parameter the route does not take, or one given twice."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route.path in _UNCHECKED:
        return
    items = request.query_params.multi_items()
    if not items:
        return
    taken, repeatable = _names(route)
    counts = Counter(name for name, _ in items)
    errors: list[dict[str, object]] = []
    listed = ", ".join(sorted(taken)) or "none"
    for name, count in counts.items():
        if name not in taken:
            errors.append(
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": f"unknown query parameter; this endpoint takes: {listed}",
                    "input": name,
                }
            )
        elif count > 1 and name not in repeatable:
            errors.append(
                {
                    "type": "repeated",
                    "loc": ("query", name),
                    "msg": f"given {count} times; give each query parameter once",
                    "input": name,
                }
            )
    if errors:
        raise RequestValidationError(errors)
